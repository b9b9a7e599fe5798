// fakecublaslt.cc: a libcublasLt stand-in for runtime/cuda's tests, next to
// fakecuda.cc (device pointers are host pointers). It implements the
// functions cublaslt.go binds for the one configuration it uses — bf16 A
// and B, f32 C and D, CUBLAS_COMPUTE_32F with f32 scale, column-major
// layouts, TRANSA/TRANSB N or T, host alpha and beta — with cuBLASLt's
// semantics: D = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n, D m×n,
// every layout column-major with ld ≥ rows. Anything else is rejected
// (CUBLAS_STATUS_INVALID_VALUE or NOT_SUPPORTED), never guessed at.
#include <cstdint>
#include <cstring>
#include <initializer_list>

typedef int cublasStatus_t;
enum { OK = 0, NOT_INITIALIZED = 1, INVALID_VALUE = 7, NOT_SUPPORTED = 15 };
enum { R_32F = 0, R_16BF = 14, COMPUTE_32F = 68, OP_N = 0, OP_T = 1 };
enum { DESC_TRANSA = 3, DESC_TRANSB = 4, PREF_MAX_WORKSPACE_BYTES = 1 };
static const uint64_t MAGIC = 0x70696f2d67656d6dull;  // marks handles and algos made here

struct handle { uint64_t magic; };
struct desc { int compute, scale, transa, transb; };
struct layout { int type; uint64_t rows, cols; int64_t ld; };
struct pref { uint64_t max_ws; };
struct algo { uint64_t data[8]; };
struct heuristic {
  algo a;
  size_t workspace;
  cublasStatus_t state;
  float waves;
  int reserved[4];
};

static float bf16(const void* p, uint64_t i) {
  uint32_t b = (uint32_t)((const uint16_t*)p)[i] << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

// check validates a problem as cublasLtMatmul would.
static cublasStatus_t check(const handle* h, const desc* d, const layout* A, const layout* B, const layout* C, const layout* D) {
  if (!h || h->magic != MAGIC) return NOT_INITIALIZED;
  if (!d || !A || !B || !C || !D) return INVALID_VALUE;
  if (d->compute != COMPUTE_32F || d->scale != R_32F) return NOT_SUPPORTED;
  if (A->type != R_16BF || B->type != R_16BF || C->type != R_32F || D->type != R_32F) return NOT_SUPPORTED;
  for (const layout* l : {A, B, C, D})
    if (l->rows == 0 || l->cols == 0 || l->ld < (int64_t)l->rows) return INVALID_VALUE;
  uint64_t m = D->rows, n = D->cols;
  uint64_t am = d->transa == OP_N ? A->rows : A->cols, ak = d->transa == OP_N ? A->cols : A->rows;
  uint64_t bk = d->transb == OP_N ? B->rows : B->cols, bn = d->transb == OP_N ? B->cols : B->rows;
  if (am != m || bn != n || ak != bk) return INVALID_VALUE;
  if (C->rows != m || C->cols != n || C->ld != D->ld) return INVALID_VALUE;
  return OK;
}

extern "C" {
cublasStatus_t cublasLtCreate(handle** h) { *h = new handle{MAGIC}; return OK; }
cublasStatus_t cublasLtDestroy(handle* h) {
  if (!h || h->magic != MAGIC) return NOT_INITIALIZED;
  h->magic = 0;
  delete h;
  return OK;
}
cublasStatus_t cublasLtMatmulDescCreate(desc** d, int compute, int scale) {
  if (compute != COMPUTE_32F || scale != R_32F) return NOT_SUPPORTED;
  *d = new desc{compute, scale, OP_N, OP_N};
  return OK;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(desc* d, int attr, const void* buf, size_t size) {
  if (!d || !buf || size != 4 || (attr != DESC_TRANSA && attr != DESC_TRANSB)) return INVALID_VALUE;
  int op;
  memcpy(&op, buf, 4);
  if (op != OP_N && op != OP_T) return NOT_SUPPORTED;
  (attr == DESC_TRANSA ? d->transa : d->transb) = op;
  return OK;
}
cublasStatus_t cublasLtMatmulDescDestroy(desc* d) { delete d; return OK; }
cublasStatus_t cublasLtMatrixLayoutCreate(layout** l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (type != R_16BF && type != R_32F) return NOT_SUPPORTED;
  *l = new layout{type, rows, cols, ld};
  return OK;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(layout* l) { delete l; return OK; }
cublasStatus_t cublasLtMatmulPreferenceCreate(pref** p) { *p = new pref{0}; return OK; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(pref* p, int attr, const void* buf, size_t size) {
  if (!p || !buf || attr != PREF_MAX_WORKSPACE_BYTES || size != 8) return INVALID_VALUE;
  memcpy(&p->max_ws, buf, 8);
  return OK;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(pref* p) { delete p; return OK; }
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(handle* h, desc* d, layout* A, layout* B, layout* C, layout* D, pref* p,
                                              int requested, heuristic* res, int* count) {
  if (requested <= 0 || !p || !res || !count) return INVALID_VALUE;
  if (cublasStatus_t s = check(h, d, A, B, C, D)) return s;
  memset(res, 0, sizeof *res);
  res->a.data[0] = MAGIC;
  res->state = OK;
  res->waves = 1;
  *count = 1;
  return OK;
}
cublasStatus_t cublasLtMatmul(handle* h, desc* d, const float* alpha, const void* a, layout* A, const void* b, layout* B,
                              const float* beta, const void* c, layout* C, void* dd, layout* D, const algo* al,
                              void*, size_t, void*) {
  if (cublasStatus_t s = check(h, d, A, B, C, D)) return s;
  if (!alpha || !beta || !a || !b || !dd || (*beta != 0 && !c)) return INVALID_VALUE;
  if (!al || al->data[0] != MAGIC) return INVALID_VALUE;
  uint64_t m = D->rows, n = D->cols, k = d->transa == OP_N ? A->cols : A->rows;
  float* out = (float*)dd;
  for (uint64_t j = 0; j < n; j++)
    for (uint64_t i = 0; i < m; i++) {
      float acc = 0;
      for (uint64_t l = 0; l < k; l++) {
        float av = d->transa == OP_N ? bf16(a, i + l * A->ld) : bf16(a, l + i * A->ld);
        float bv = d->transb == OP_N ? bf16(b, l + j * B->ld) : bf16(b, j + l * B->ld);
        acc += av * bv;
      }
      float v = *alpha * acc;
      if (*beta != 0) v += *beta * ((const float*)c)[i + j * C->ld];
      out[i + j * D->ld] = v;
    }
  return OK;
}
}
