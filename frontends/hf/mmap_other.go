//go:build !unix

package hf

import (
	"io"
	"os"
)

// mapFile reads the first size bytes of f into memory: a fallback for systems
// without mmap, which loses the zero-copy property but nothing else.
func mapFile(f *os.File, size int) ([]byte, func([]byte) error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, func([]byte) error { return nil }, nil
}
