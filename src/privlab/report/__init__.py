"""Family-agnostic rendering of a report: the HTML page, console tables, markdown and run
comparison, dispatched to the studies."""
