// invoke.h: appended to an emulated module. PIO_KERNEL(name) exports
// pio_invoke_<name>(void** params), which calls the kernel with its
// parameters unpacked from the cuLaunchKernel array by the kernel's own
// signature.
#pragma once
#include <utility>
template <class... A, std::size_t... I>
void pio_call(void (*f)(A...), void** p, std::index_sequence<I...>) { f(*(A*)p[I]...); }
template <class... A>
void pio_call(void (*f)(A...), void** p) { pio_call(f, p, std::index_sequence_for<A...>{}); }
#define PIO_KERNEL(name) extern "C" void pio_invoke_##name(void** p) { pio_call(name, p); }
