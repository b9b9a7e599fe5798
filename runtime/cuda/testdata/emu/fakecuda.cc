// fakecuda.cc: a libcuda stand-in for runtime/cuda's tests. Memory is host
// memory, a module image is the path of a shared object built from the
// generated .cu with emu.h, and a launch runs the kernel's blocks one after
// another, each thread a fiber. Only what the backend calls is here.
#include <dlfcn.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <setjmp.h>
#include <ucontext.h>

typedef int CUresult;
struct dim3e { unsigned x, y, z; };

struct pio_fiber {
  ucontext_t ctx;  // the first entry (makecontext)
  jmp_buf jb;      // later switches: _setjmp/_longjmp, no signal-mask syscalls
  bool started;
  unsigned tid;
  int state;  // 0 running, 1 at a block barrier, 2 at a warp barrier, 3 done
  float shfl_f;
  int shfl_i;
  std::vector<char> stack;
};

extern "C" {
pio_fiber* pio_cur;
dim3e pio_block_idx, pio_block_dim, pio_grid_dim;
}

static std::vector<pio_fiber*> fibers;
static ucontext_t sched_ctx;
static jmp_buf sched_jb;
static void (*cur_fn)(void**);
static void** cur_params;
static const char* fail;

static void fiber_main() {
  cur_fn(cur_params);
  pio_cur->state = 3;
  _longjmp(sched_jb, 1);
}

// wait marks the running fiber as waiting and switches to the scheduler.
static void wait(int state) {
  pio_cur->state = state;
  if (!_setjmp(pio_cur->jb)) _longjmp(sched_jb, 1);
}

extern "C" unsigned pio_emu_tid() { return pio_cur->tid; }
extern "C" void pio_emu_sync_block() { wait(1); }
extern "C" void pio_emu_sync_warp() { wait(2); }
extern "C" float pio_emu_shfl(float v, int lane, int mode) {
  pio_cur->shfl_f = v;
  wait(2);
  unsigned me = pio_cur->tid, base = me & ~31u, src = mode ? (me ^ lane) : (base + (lane & 31));
  float r = src < fibers.size() ? fibers[src]->shfl_f : v;
  wait(2);
  return r;
}
extern "C" int pio_emu_shfl_i(int v, int lane, int mode) {
  pio_cur->shfl_i = v;
  wait(2);
  unsigned me = pio_cur->tid, base = me & ~31u, src = mode ? (me ^ lane) : (base + (lane & 31));
  int r = src < fibers.size() ? fibers[src]->shfl_i : v;
  wait(2);
  return r;
}

// run_block runs one block of n threads to completion.
static void run_block(unsigned n) {
  while (fibers.size() < n) {
    auto* f = new pio_fiber();
    f->stack.resize(256 << 10);
    fibers.push_back(f);
  }
  for (unsigned i = 0; i < n; i++) {
    pio_fiber* f = fibers[i];
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack.data();
    f->ctx.uc_stack.ss_size = f->stack.size();
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, fiber_main, 0);
    f->tid = i;
    f->state = 0;
    f->started = false;
  }
  for (;;) {
    bool progress = false;
    for (unsigned i = 0; i < n; i++) {
      pio_fiber* f = fibers[i];
      if (f->state != 0) continue;
      pio_cur = f;
      if (!_setjmp(sched_jb)) {
        if (!f->started) {
          f->started = true;
          swapcontext(&sched_ctx, &f->ctx);
        } else {
          _longjmp(f->jb, 1);
        }
      }
      progress = true;
    }
    // Release warp barriers whose live lanes all arrived, then block
    // barriers whose live threads all arrived.
    bool released = false;
    for (unsigned w = 0; w * 32 < n; w++) {
      bool all = true, any = false;
      for (unsigned i = w * 32; i < n && i < w * 32 + 32; i++) {
        int s = fibers[i]->state;
        if (s == 0 || s == 1) all = false;
        if (s == 2) any = true;
      }
      if (all && any) {
        for (unsigned i = w * 32; i < n && i < w * 32 + 32; i++)
          if (fibers[i]->state == 2) fibers[i]->state = 0;
        released = true;
      }
    }
    if (!released) {
      bool all = true, any = false, done = true;
      for (unsigned i = 0; i < n; i++) {
        int s = fibers[i]->state;
        if (s != 3) done = false;
        if (s == 0 || s == 2) all = false;
        if (s == 1) any = true;
      }
      if (done) return;
      if (all && any) {
        for (unsigned i = 0; i < n; i++)
          if (fibers[i]->state == 1) fibers[i]->state = 0;
        released = true;
      }
    }
    if (!progress && !released) {
      fail = "deadlock: threads wait at different barriers";
      return;
    }
  }
}

extern "C" {
CUresult cuInit(unsigned) { return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return 0; }
CUresult cuDeviceGet(int* d, int) { *d = 0; return 0; }
CUresult cuDeviceGetAttribute(int* v, int attr, int) { *v = attr == 75 ? 8 : attr == 76 ? 0 : 1; return 0; }
CUresult cuDeviceGetName(char* name, int n, int) { snprintf(name, n, "emulated CUDA device (CPU)"); return 0; }
CUresult cuDeviceTotalMem_v2(uint64_t* b, int) { *b = 1ull << 34; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = (void*)1; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuCtxSetCurrent(void*) { return 0; }
CUresult cuCtxSynchronize() { return 0; }
CUresult cuMemAlloc_v2(uint64_t* p, uint64_t n) {
  void* m = aligned_alloc(256, (n + 255) / 256 * 256);
  if (!m) return 2;
  memset(m, 0xff, n);  // garbage, like device memory: kernels must not read unwritten data as zeros
  *p = (uint64_t)m;
  return 0;
}
CUresult cuMemFree_v2(uint64_t p) { free((void*)p); return 0; }
static int fake_host_allocs;  // pinned host buffers live, for the tests
int fake_host_allocs_live() { return fake_host_allocs; }
CUresult cuMemAllocHost_v2(void** p, uint64_t n) {
  *p = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
  if (!*p) return 2;
  fake_host_allocs++;
  return 0;
}
CUresult cuMemFreeHost(void* p) {
  free(p);
  fake_host_allocs--;
  return 0;
}
CUresult cuMemGetInfo_v2(uint64_t* f, uint64_t* t) { *f = *t = 1ull << 34; return 0; }
CUresult cuMemcpyHtoD_v2(uint64_t d, const void* s, uint64_t n) { memcpy((void*)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void* d, uint64_t s, uint64_t n) { memcpy(d, (void*)s, n); return 0; }
CUresult cuMemcpyHtoDAsync_v2(uint64_t d, const void* s, uint64_t n, void*) { memcpy((void*)d, s, n); return 0; }
CUresult cuMemcpyDtoD_v2(uint64_t d, uint64_t s, uint64_t n) { memcpy((void*)d, (void*)s, n); return 0; }
CUresult cuMemsetD8_v2(uint64_t p, unsigned char v, uint64_t n) { memset((void*)p, v, n); return 0; }
CUresult cuModuleLoadData(void** mod, const void* image) {
  void* h = dlopen((const char*)image, RTLD_NOW | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "fakecuda: %s\n", dlerror()); return 200; }
  *mod = h;
  return 0;
}
CUresult cuModuleUnload(void* mod) { dlclose(mod); return 0; }
// A function is the module's entry points for one kernel.
struct function {
  void (*invoke)(void**);
  void* (*bind)(void**);
  void (*run)(void**);
  void (*free)(void*);
};

CUresult cuModuleGetFunction(void** f, void* mod, const char* name) {
  auto* fn = new function();
  fn->invoke = (void (*)(void**))dlsym(mod, (std::string("pio_invoke_") + name).c_str());
  fn->bind = (void* (*)(void**))dlsym(mod, (std::string("pio_bind_") + name).c_str());
  fn->run = (void (*)(void**))dlsym(mod, "pio_run_bound");
  fn->free = (void (*)(void*))dlsym(mod, "pio_free_bound");
  if (!fn->invoke || !fn->bind || !fn->run) { delete fn; return 500; }
  *f = fn;
  return 0;
}

// Graph capture records launches with their parameters copied; a launch
// replays them.
struct node {
  function* fn;
  void* bound;
  unsigned g[3], b;
};
struct graph {
  std::vector<node> nodes;
};
static graph* capturing;

static CUresult run(void (*fn)(void**), void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx) {
  cur_fn = fn;
  cur_params = params;
  pio_grid_dim = {gx, gy, gz};
  pio_block_dim = {bx, 1, 1};
  for (unsigned z = 0; z < gz; z++)
    for (unsigned y = 0; y < gy; y++)
      for (unsigned x = 0; x < gx; x++) {
        pio_block_idx = {x, y, z};
        run_block(bx);
        if (fail) { fprintf(stderr, "fakecuda: %s\n", fail); return 719; }
      }
  return 0;
}

CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned,
                        void*, void** params, void**) {
  if (by != 1 || bz != 1 || bx == 0 || bx > 1024) return 1;
  auto* fn = (function*)f;
  if (capturing) {
    capturing->nodes.push_back(node{fn, fn->bind(params), {gx, gy, gz}, bx});
    return 0;
  }
  return run(fn->invoke, params, gx, gy, gz, bx);
}
CUresult cuStreamCreate(void** s, unsigned) { *s = (void*)1; return 0; }
CUresult cuStreamDestroy_v2(void*) { return 0; }
CUresult cuStreamSynchronize(void*) { return 0; }
CUresult cuStreamBeginCapture_v2(void*, int) {
  if (capturing) return 900;
  capturing = new graph();
  return 0;
}
CUresult cuStreamEndCapture(void*, void** g) {
  if (!capturing) return 901;
  *g = capturing;
  capturing = nullptr;
  return 0;
}
CUresult cuGraphInstantiateWithFlags(void** exec, void* g, unsigned long long) { *exec = g; return 0; }
CUresult cuGraphLaunch(void* exec, void*) {
  for (auto& n : ((graph*)exec)->nodes) {
    CUresult r = run(n.fn->run, (void**)n.bound, n.g[0], n.g[1], n.g[2], n.b);
    if (r) return r;
  }
  return 0;
}
CUresult cuGraphExecDestroy(void*) { return 0; }
CUresult cuGraphDestroy(void* g) {
  for (auto& n : ((graph*)g)->nodes) n.fn->free(n.bound);
  delete (graph*)g;
  return 0;
}
// An event is the host time it was recorded at: launches run synchronously.
CUresult cuEventCreate(void** e, unsigned) { *e = new double(-1); return 0; }
CUresult cuEventRecord(void* e, void*) {
  if (capturing) return 900;
  *(double*)e = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  return 0;
}
CUresult cuEventSynchronize(void*) { return 0; }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
  double t0 = *(double*)a, t1 = *(double*)b;
  if (t0 < 0 || t1 < 0) return 600;  // CUDA_ERROR_NOT_READY: never recorded
  *ms = (float)(t1 - t0);
  return 0;
}
CUresult cuEventDestroy_v2(void* e) { delete (double*)e; return 0; }
CUresult cuGetErrorString(CUresult r, const char** s) {
  static char buf[64];
  snprintf(buf, sizeof buf, "fakecuda error %d", r);
  *s = buf;
  return 0;
}
}
