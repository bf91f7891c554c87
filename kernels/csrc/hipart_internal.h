/* Internal types shared by the runtime and the generated launchers of libhipart_kernels. */
#ifndef HIPART_INTERNAL_H
#define HIPART_INTERNAL_H

#include <cuda.h>
#include <stddef.h>

#define HIPART_MAX_CONTEXTS 8 /* CUDA contexts (one per GPU, typically) a process may launch in */

typedef struct {
  int arch;                   /* 87, 89, 90 */
  int arch_specific;          /* 1 for sm_90a-style cubins: run only on exactly this arch */
  const unsigned char *image; /* the cubin */
  size_t size;
  int shared;    /* dynamic shared memory per launch (bytes) */
  int registers; /* per thread, from the cubin */
} hipart_cubin_t;

typedef struct {
  const char *name;   /* variant, e.g. codebook_nn_fp32 */
  const char *symbol; /* kernel symbol inside the cubin */
  int num_warps;
  const hipart_cubin_t *cubins;
  int num_cubins;
  struct { /* one per CUDA context (device) used, filled lazily by hipart_launch under the runtime's lock */
    CUcontext ctx;
    CUmodule module;
    CUfunction function;
    const hipart_cubin_t *cubin;
  } loaded[HIPART_MAX_CONTEXTS];
} hipart_kernel_t;

extern hipart_kernel_t *const hipart_kernel_table[];
extern const int hipart_kernel_table_size;
extern const char *const hipart_cubin_triton_version;

int hipart_fail(int code, const char *fmt, ...);
int hipart_launch(hipart_kernel_t *k, void *stream, unsigned gx, unsigned gy, unsigned gz, void **params);

#endif
