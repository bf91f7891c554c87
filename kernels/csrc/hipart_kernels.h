/* libhipart_kernels: the Triton kernels of hipart-edge, compiled ahead of time, behind a small C API.
 *
 * The CUDA driver (libcuda.so.1) is opened at run time, so the library links and loads on machines without
 * one; every entry point then returns HIPART_ERR_NO_DRIVER. Launches go to the CUDA context current on the
 * calling thread (the one PyTorch made, say); with none current, the device-0 primary context is used.
 * `stream` is a CUstream (NULL = legacy default stream). Device pointers must be 16-byte aligned.
 * Every function returns 0 on success or a negative HIPART_ERR_*; hipart_last_error() says why.
 */
#ifndef HIPART_KERNELS_H
#define HIPART_KERNELS_H

#include <stdint.h>

#if defined(_WIN32)
#define HIPART_API __declspec(dllexport)
#else
#define HIPART_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
  HIPART_OK = 0,
  HIPART_ERR_NO_DRIVER = -1, /* libcuda.so.1 missing or a symbol missing from it */
  HIPART_ERR_CUDA = -2,      /* a driver call failed; the message names it */
  HIPART_ERR_NO_CUBIN = -3,  /* no cubin in the library for this GPU's compute capability */
  HIPART_ERR_ARGS = -4,      /* arguments outside what the compiled variant supports */
  HIPART_ERR_ALIGN = -5,     /* a device pointer not 16-byte aligned */
  HIPART_ERR_INDEX = -6      /* hipart_kernel_info index out of range */
};

/* Loads the driver and resolves the current device's compute capability (idempotent, thread-safe). */
HIPART_API int hipart_init(void);
/* Message of the last failure on this thread ("" if none). */
HIPART_API const char *hipart_last_error(void);
/* Compute capability of the current device as major*10+minor, after hipart_init; negative on failure. */
HIPART_API int hipart_device_arch(void);
/* Triton version the cubins were built with. */
HIPART_API const char *hipart_triton_version(void);
/* Number of kernel variants, and the name / compiled archs of variant i (archs: up to max_archs ints). */
HIPART_API int hipart_kernel_count(void);
HIPART_API int hipart_kernel_info(int i, const char **name, int *archs, int max_archs, int *num_archs);
/* Registers per thread and dynamic shared memory of variant i for arch (e.g. 87); -1 if not built for it. */
HIPART_API int hipart_kernel_resources(int i, int arch, int *registers, int *shared_bytes);

#ifdef __cplusplus
}
#endif

#include "hipart_kernels_generated.h" /* hipart_<variant>(...) launchers, written by kernels/aot.py gen-c */

#endif
