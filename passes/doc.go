// Package passes rewrites ir.Graphs and lowers them to ir.Plans.
//
// A pass is a func(*ir.Graph) error in a file named after it, opening with
// its contract. Pipeline is the ordered table `pioc passes` prints; Order
// lists the ordering constraints between passes, each with the reason, and
// a test checks Pipeline against it. Run applies the pipeline, verifying the
// graph before and after every pass when asked (tests and `pioc build
// --check` do) so an error names the pass that broke the graph. Lower turns
// the final graph into the plan the runtime executes (lower.go). Errors
// begin "passes: " and name the pass (or lower) they come from.
package passes
