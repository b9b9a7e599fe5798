package cuda

// ModuleBodies exposes a module's kernel texts to the external tests
// (vision_test.go merges several plans' modules into one nvcc run).
func ModuleBodies(m *Module) []string { return m.bodies }

// Prelude is the module prelude, for the external tests.
var Prelude = prelude
