// The settings page's scripts in one file (frontend/build.sh): the layout's modules, then the page's.
import "../../src/conveyor/web/static/js/layout.js";
import "../../src/conveyor/web/static/js/settings-forms.js";
