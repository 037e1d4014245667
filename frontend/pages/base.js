// The base page scripts (every page without its own): the layout's modules, in one file (frontend/build.sh).
import "../../src/conveyor/web/static/js/layout.js";
