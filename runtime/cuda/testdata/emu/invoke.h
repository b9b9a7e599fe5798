// invoke.h: appended to an emulated module. PIO_KERNEL(name) exports
// pio_invoke_<name>(void** params), which calls the kernel with its
// parameters unpacked from the cuLaunchKernel array by the kernel's own
// signature, and pio_bind_<name>(void** params), which copies them (as a
// CUDA graph node does at capture) for pio_run_bound to replay.
#pragma once
#include <tuple>
#include <utility>

struct pio_bound {
  virtual void run() = 0;
  virtual ~pio_bound() {}
};
template <class... A>
struct pio_bound_t : pio_bound {
  void (*f)(A...);
  std::tuple<A...> args;
  pio_bound_t(void (*f)(A...), std::tuple<A...> a) : f(f), args(a) {}
  void run() override { std::apply(f, args); }
};
template <class... A, std::size_t... I>
void pio_call(void (*f)(A...), void** p, std::index_sequence<I...>) { f(*(A*)p[I]...); }
template <class... A>
void pio_call(void (*f)(A...), void** p) { pio_call(f, p, std::index_sequence_for<A...>{}); }
template <class... A, std::size_t... I>
pio_bound* pio_bind(void (*f)(A...), void** p, std::index_sequence<I...>) {
  return new pio_bound_t<A...>(f, std::tuple<A...>(*(A*)p[I]...));
}
template <class... A>
pio_bound* pio_bind(void (*f)(A...), void** p) { return pio_bind(f, p, std::index_sequence_for<A...>{}); }

extern "C" void pio_run_bound(void** b) { ((pio_bound*)b)->run(); }
extern "C" void pio_free_bound(void* b) { delete (pio_bound*)b; }

#define PIO_KERNEL(name)                                                   \
  extern "C" void pio_invoke_##name(void** p) { pio_call(name, p); }      \
  extern "C" void* pio_bind_##name(void** p) { return pio_bind(name, p); }
