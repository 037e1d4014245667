// The webhook helpers of the Triggers tab: copying a URL or a command, and the test request,
// which the browser sends itself to the hook URL (without the session cookie, so the hook
// sees what a provider would send). Only for auth none, or a header token or HTTP basic
// whose secret the person types: it is used for that request and never kept.

export async function copy(button, say) {
  const source = document.getElementById(button.dataset.copy);
  const text = source.value ?? source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Without the clipboard API (an insecure origin): select it for Ctrl+C.
    if (source.select) {
      source.select();
    } else {
      const range = document.createRange();
      range.selectNodeContents(source);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    }
    say("Selected: press Ctrl+C to copy");
    return;
  }
  const label = button.firstChild;
  label.textContent = "Copied";
  say("Copied to the clipboard");
  setTimeout(() => { label.textContent = "Copy"; }, 1500);
}

function responseView(status, text) {
  const wrap = document.createElement("div");
  const line = document.createElement("p");
  line.textContent = `Answered ${status}`;
  line.dataset.testStatus = String(status);
  const pre = document.createElement("pre");
  pre.className = "json";
  pre.tabIndex = 0; // it may scroll: reachable by keyboard
  pre.setAttribute("aria-label", "Response body");
  pre.textContent = text || "(empty body)";
  wrap.append(line, pre);
  return wrap;
}

export async function sendTest(form) {
  const out = form.querySelector("[data-test-response]");
  const { url, method, auth, header, username } = form.dataset;
  const headers = { "Content-Type": "application/json" };
  const secret = form.secret?.value ?? "";
  if (auth === "header") headers[header] = secret;
  if (auth === "basic") headers.Authorization = `Basic ${btoa(`${username}:${secret}`)}`;
  const body = method === "GET" ? undefined : form.body.value;
  out.textContent = "Sending…";
  try {
    // No cookie: the hook sees what a provider would send.
    const response = await fetch(url, { method, headers, body, credentials: "omit" });
    out.replaceChildren(responseView(response.status, await response.text()));
  } catch (error) {
    out.replaceChildren(responseView("no answer", String(error)));
  }
}
