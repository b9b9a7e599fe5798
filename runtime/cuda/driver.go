package cuda

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// result is a CUresult.
type result int32

// Device attributes (CUdevice_attribute).
const (
	attrComputeCapabilityMajor = 75
	attrComputeCapabilityMinor = 76
	attrMultiprocessorCount    = 16
)

// driver holds the CUDA driver API functions the backend uses.
type driver struct {
	cuInit                    func(flags uint32) result
	cuDriverGetVersion        func(v *int32) result
	cuDeviceGetCount          func(n *int32) result
	cuDeviceGet               func(dev *int32, ordinal int32) result
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) result
	cuDeviceGetName           func(name *byte, n int32, dev int32) result
	cuDeviceTotalMem          func(bytes *uint64, dev int32) result
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) result
	cuDevicePrimaryCtxRelease func(dev int32) result
	cuCtxSetCurrent           func(ctx uintptr) result
	cuCtxSynchronize          func() result
	cuMemAlloc                func(p *uint64, size uint64) result
	cuMemFree                 func(p uint64) result
	cuMemAllocHost            func(p *unsafe.Pointer, size uint64) result
	cuMemFreeHost             func(p unsafe.Pointer) result
	cuMemGetInfo              func(free, total *uint64) result
	cuMemcpyHtoD              func(dst uint64, src unsafe.Pointer, n uint64) result
	cuMemcpyDtoH              func(dst unsafe.Pointer, src uint64, n uint64) result
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, n uint64, stream uintptr) result
	cuMemcpyDtoD              func(dst, src uint64, n uint64) result
	cuMemsetD8                func(p uint64, v uint8, n uint64) result
	cuModuleLoadData          func(mod *uintptr, image unsafe.Pointer) result
	cuModuleUnload            func(mod uintptr) result
	cuModuleGetFunction       func(f *uintptr, mod uintptr, name *byte) result
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) result
	cuStreamCreate            func(s *uintptr, flags uint32) result
	cuStreamDestroy           func(s uintptr) result
	cuStreamSynchronize       func(s uintptr) result
	cuStreamBeginCapture      func(s uintptr, mode int32) result
	cuStreamEndCapture        func(s uintptr, graph *uintptr) result
	cuGraphInstantiate        func(exec *uintptr, graph uintptr, flags uint64) result
	cuGraphLaunch             func(exec uintptr, s uintptr) result
	cuGraphExecDestroy        func(exec uintptr) result
	cuGraphDestroy            func(graph uintptr) result
	cuGetErrorString          func(r result, s **byte) result
	cuEventCreate             func(e *uintptr, flags uint32) result
	cuEventRecord             func(e uintptr, stream uintptr) result
	cuEventSynchronize        func(e uintptr) result
	cuEventElapsedTime        func(ms *float32, start, end uintptr) result
	cuEventDestroy            func(e uintptr) result
}

// symbol binds one exported symbol of a library to a function field of a
// T (driver, cublasLt).
type symbol[T any] struct {
	name string
	fn   func(t *T) any // pointer to the field
}

// driverSymbols are libcuda's. Versioned entry points are bound by their
// _v2 names: the unversioned names are the CUDA 3.x ABI (32-bit sizes)
// kept for old binaries.
var driverSymbols = []symbol[driver]{
	{"cuInit", func(d *driver) any { return &d.cuInit }},
	{"cuDriverGetVersion", func(d *driver) any { return &d.cuDriverGetVersion }},
	{"cuDeviceGetCount", func(d *driver) any { return &d.cuDeviceGetCount }},
	{"cuDeviceGet", func(d *driver) any { return &d.cuDeviceGet }},
	{"cuDeviceGetAttribute", func(d *driver) any { return &d.cuDeviceGetAttribute }},
	{"cuDeviceGetName", func(d *driver) any { return &d.cuDeviceGetName }},
	{"cuDeviceTotalMem_v2", func(d *driver) any { return &d.cuDeviceTotalMem }},
	{"cuDevicePrimaryCtxRetain", func(d *driver) any { return &d.cuDevicePrimaryCtxRetain }},
	{"cuDevicePrimaryCtxRelease_v2", func(d *driver) any { return &d.cuDevicePrimaryCtxRelease }},
	{"cuCtxSetCurrent", func(d *driver) any { return &d.cuCtxSetCurrent }},
	{"cuCtxSynchronize", func(d *driver) any { return &d.cuCtxSynchronize }},
	{"cuMemAlloc_v2", func(d *driver) any { return &d.cuMemAlloc }},
	{"cuMemFree_v2", func(d *driver) any { return &d.cuMemFree }},
	{"cuMemAllocHost_v2", func(d *driver) any { return &d.cuMemAllocHost }},
	{"cuMemFreeHost", func(d *driver) any { return &d.cuMemFreeHost }},
	{"cuMemGetInfo_v2", func(d *driver) any { return &d.cuMemGetInfo }},
	{"cuMemcpyHtoD_v2", func(d *driver) any { return &d.cuMemcpyHtoD }},
	{"cuMemcpyDtoH_v2", func(d *driver) any { return &d.cuMemcpyDtoH }},
	{"cuMemcpyHtoDAsync_v2", func(d *driver) any { return &d.cuMemcpyHtoDAsync }},
	{"cuMemcpyDtoD_v2", func(d *driver) any { return &d.cuMemcpyDtoD }},
	{"cuMemsetD8_v2", func(d *driver) any { return &d.cuMemsetD8 }},
	{"cuModuleLoadData", func(d *driver) any { return &d.cuModuleLoadData }},
	{"cuModuleUnload", func(d *driver) any { return &d.cuModuleUnload }},
	{"cuModuleGetFunction", func(d *driver) any { return &d.cuModuleGetFunction }},
	{"cuLaunchKernel", func(d *driver) any { return &d.cuLaunchKernel }},
	{"cuStreamCreate", func(d *driver) any { return &d.cuStreamCreate }},
	{"cuStreamDestroy_v2", func(d *driver) any { return &d.cuStreamDestroy }},
	{"cuStreamSynchronize", func(d *driver) any { return &d.cuStreamSynchronize }},
	{"cuStreamBeginCapture_v2", func(d *driver) any { return &d.cuStreamBeginCapture }},
	{"cuStreamEndCapture", func(d *driver) any { return &d.cuStreamEndCapture }},
	{"cuGraphInstantiateWithFlags", func(d *driver) any { return &d.cuGraphInstantiate }},
	{"cuGraphLaunch", func(d *driver) any { return &d.cuGraphLaunch }},
	{"cuGraphExecDestroy", func(d *driver) any { return &d.cuGraphExecDestroy }},
	{"cuGraphDestroy", func(d *driver) any { return &d.cuGraphDestroy }},
	{"cuGetErrorString", func(d *driver) any { return &d.cuGetErrorString }},
	// Events time kernels (gemm_bench_test.go). cuEventElapsedTime is bound
	// unversioned: its _v2 needs a 12.8 driver.
	{"cuEventCreate", func(d *driver) any { return &d.cuEventCreate }},
	{"cuEventRecord", func(d *driver) any { return &d.cuEventRecord }},
	{"cuEventSynchronize", func(d *driver) any { return &d.cuEventSynchronize }},
	{"cuEventElapsedTime", func(d *driver) any { return &d.cuEventElapsedTime }},
	{"cuEventDestroy_v2", func(d *driver) any { return &d.cuEventDestroy }},
}

// libcudaNames are tried in order.
var libcudaNames = []string{"libcuda.so.1", "libcuda.so"}

// ErrNoDriver is returned (wrapped) when libcuda cannot be loaded.
var ErrNoDriver = errors.New("CUDA driver not available")

var (
	loadOnce sync.Once
	loaded   *driver
	loadErr  error
)

// loadDriver opens libcuda once per process and binds every symbol.
func loadDriver() (*driver, error) {
	loadOnce.Do(func() {
		var lib uintptr
		var errs []string
		for _, n := range libcudaNames {
			h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err == nil {
				lib = h
				break
			}
			errs = append(errs, err.Error())
		}
		if lib == 0 {
			loadErr = fmt.Errorf("%w: is the NVIDIA driver installed? %s", ErrNoDriver, strings.Join(errs, "; "))
			return
		}
		d := &driver{}
		if err := bind(d, lib); err != nil {
			loadErr = err
			return
		}
		if r := d.cuInit(0); r != 0 {
			loadErr = fmt.Errorf("%w: cuInit: %s", ErrNoDriver, d.errString(r))
			return
		}
		loaded = d
	})
	return loaded, loadErr
}

// bind resolves every symbol of driverSymbols in lib, reporting all the
// missing ones at once (an old driver).
func bind(d *driver, lib uintptr) error {
	if missing := bindSymbols(d, lib, driverSymbols); len(missing) > 0 {
		return fmt.Errorf("%w: libcuda lacks %v (driver too old; CUDA 12+ drivers have them)", ErrNoDriver, missing)
	}
	return nil
}

// bindSymbols binds every symbol of syms in lib to its field of t, or, if
// any is missing, binds none and returns the missing names.
func bindSymbols[T any](t *T, lib uintptr, syms []symbol[T]) (missing []string) {
	for _, s := range syms {
		if _, err := purego.Dlsym(lib, s.name); err != nil {
			missing = append(missing, s.name)
		}
	}
	if len(missing) > 0 {
		return missing
	}
	for _, s := range syms {
		purego.RegisterLibFunc(s.fn(t), lib, s.name)
	}
	return nil
}

// errString names a CUresult.
func (d *driver) errString(r result) string {
	var p *byte
	if d.cuGetErrorString != nil && d.cuGetErrorString(r, &p) == 0 && p != nil {
		return fmt.Sprintf("%s (%d)", cString(p), r)
	}
	return fmt.Sprintf("CUresult %d", r)
}

// check turns a CUresult into an error naming the call.
func (d *driver) check(r result, what string) error {
	if r == 0 {
		return nil
	}
	return fmt.Errorf("cuda: %s: %s", what, d.errString(r))
}

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	var b []byte
	for ptr := unsafe.Pointer(p); *(*byte)(ptr) != 0 && len(b) < 4096; ptr = unsafe.Add(ptr, 1) {
		b = append(b, *(*byte)(ptr))
	}
	return string(b)
}
