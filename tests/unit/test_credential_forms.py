"""The credentials page's forms: controls from a type's fields, data from a posted form, a
refusal placed at its field; no secret value is ever put back into a control."""

from __future__ import annotations

from conveyor.credentials import check
from conveyor.errors import InputError
from conveyor.web import credential_forms as forms


def test_controls_follow_the_types_fields_and_never_carry_a_secret() -> None:
    shown = {"host": "smtp.example.com", "password": "typed-secret", "port": 2525}
    controls = {c.field: c for c in forms.inputs("smtp", shown)}
    assert controls["password"].kind == "password" and controls["password"].value == ""
    assert controls["host"].value == "smtp.example.com" and controls["host"].required
    assert controls["port"].kind == "number" and controls["port"].value == "2525"
    assert controls["security"].kind == "select" and controls["security"].value == "starttls"
    assert controls["security"].choices == ("starttls", "tls", "none")
    assert not controls["sender"].required and controls["sender"].name == "field.sender"


def test_a_posted_form_becomes_the_credentials_data() -> None:
    form = {
        "field.host": " smtp.example.com ",
        "field.port": "",
        "field.password": " pass word ",
        "field.username": "",
        "name": "ignored",
    }
    data = forms.data_of("smtp", form)
    assert data == {"host": "smtp.example.com", "password": " pass word "}
    assert check("smtp", data)["port"] == 587  # blank: the default
    assert forms.shown_values("smtp", form) == {
        "host": " smtp.example.com ",
        "port": "",
        "username": "",
    }


def test_a_refusal_names_its_field() -> None:
    for data, field in (({}, "token"), ({"token": "abc"}, "token")):
        try:
            check("bearer", data)
        except InputError as exc:
            assert forms.field_of("bearer", str(exc)) == field
        else:
            raise AssertionError("check accepted it")
    assert forms.field_of("smtp", "'port' must be an integer") == "port"
    assert forms.field_of("bearer", "credential 'x' already exists") is None


def test_too_long_values_and_the_delete_confirmation() -> None:
    assert forms.too_long({"field.token": "x" * (forms.MAX_VALUE + 1)}) == "token"
    assert forms.too_long({"field.token": "x" * forms.MAX_VALUE, "other": "y" * 20_000}) is None
    assert forms.used_by_words([]) == "No workflow uses it."
    words = forms.used_by_words([{"workflow": "a"}, {"workflow": "b"}])
    assert "workflows a, b" in words
