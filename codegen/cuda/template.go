package cuda

import (
	"fmt"
	"strings"
	"text/template"
)

// Kernel templates. A kernel's CUDA is one text/template with named holes
// for what its step fixes ({{.K}}, {{.WT}}, {{if .Norm}}...{{end}}), so that
// the generator reads like the kernel it writes. Every template is parsed
// once, at package initialisation, into one set (kernelSet), named after its
// kernel (matmul_mma) or, for a fragment that several kernels share, after
// the fragment (mma_slice); its Go variable is that name with a Tmpl
// suffix (matmulMMATmpl, mmaSliceTmpl).
//
// Conventions:
//   - A kernel template is its text from the comment line to the closing
//     brace and the newline after it; KNAME stands for the kernel's symbol
//     (gen.kernel names the instantiation by the hash of its text).
//   - A fragment is whole lines without the last newline: {{template
//     "mma_slice" .}} on a line of its own puts its lines where it stands,
//     {{include "mma_load" . | indent}} two columns deeper.
//   - An optional line is written {{- if .X}} / line / {{- end}}, each
//     action on a line of its own: the "-" eats the newline before the
//     action, so the line and its newline appear only when .X holds. A
//     fragment of optional lines (moe_scratch) writes each with the newline
//     before it and is included as {{- template ...}}.
//   - A template's data is a struct of the holes (matmulWarpHoles, ...),
//     exported fields and methods; derived values (a block's threads, a
//     row's 32-lane chunks) are methods, so that the generator sets only
//     what the step decides. Functions: cf (a float literal), include and
//     indent.
var kernelSet = newKernelSet()

func newKernelSet() *template.Template {
	t := template.New("kernels")
	return t.Funcs(template.FuncMap{
		// include renders template name as a string, for indent.
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			err := t.ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"indent": indentFragment,
		"cf":     cf,
	})
}

// kernelTemplate parses text as the template name of the kernel set.
func kernelTemplate(name, text string) *template.Template {
	return template.Must(kernelSet.New(name).Parse(text))
}

// emit renders kernel template t with data and adds the instantiation
// (gen.kernel), returning its symbol.
func (g *gen) emit(base string, t *template.Template, data any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("kernel %s: %w", base, err)
	}
	return g.kernel(base, b.String()), nil
}

// indentFragment adds two spaces to every line of a fragment but #pragma
// lines, which stay in the first column.
func indentFragment(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "#") {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}
