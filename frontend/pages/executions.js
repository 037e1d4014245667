// The executions page's scripts in one file (frontend/build.sh): the layout's modules, then the page's.
import "../../src/conveyor/web/static/js/layout.js";
import "../../src/conveyor/web/static/js/executions-live.js";
import "../../src/conveyor/web/static/js/executions-bulk.js";
import "../../src/conveyor/web/static/js/executions-filters.js";
