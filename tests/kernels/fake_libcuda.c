/* A stand-in libcuda.so.1 for testing libhipart_kernels on a machine without a GPU.
 *
 * It implements the driver entry points the runtime resolves, reports the compute capability given in
 * $HIPART_FAKE_CC (e.g. "87"), checks that loaded images are ELF cubins holding the requested kernel
 * symbol, and appends one line per launch to $HIPART_FAKE_LOG: the loaded image's size, grid, block,
 * shared memory and the kernel parameters decoded with the type string $HIPART_FAKE_PARAMS
 * ('p' 64-bit pointer, 'i' int32, 'f' float32). */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static CUcontext current;
/* Bytes of an ELF image: the end of its section-header or program-header table, whichever is later. */
static size_t image_size(const unsigned char *img) {
  uint64_t shoff, phoff;
  uint16_t phentsize, phnum, shentsize, shnum;
  memcpy(&phoff, img + 0x20, 8);
  memcpy(&shoff, img + 0x28, 8);
  memcpy(&phentsize, img + 0x36, 2);
  memcpy(&phnum, img + 0x38, 2);
  memcpy(&shentsize, img + 0x3A, 2);
  memcpy(&shnum, img + 0x3C, 2);
  uint64_t sh_end = shoff + (uint64_t)shentsize * shnum, ph_end = phoff + (uint64_t)phentsize * phnum;
  return (size_t)(sh_end > ph_end ? sh_end : ph_end);
}

CUresult cuInit(unsigned int flags) { return CUDA_SUCCESS; }
CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = "fake driver error";
  return CUDA_SUCCESS;
}
CUresult cuCtxGetCurrent(CUcontext *c) {
  *c = current;
  return CUDA_SUCCESS;
}
CUresult cuCtxSetCurrent(CUcontext c) {
  current = c;
  return CUDA_SUCCESS;
}
CUresult cuCtxGetDevice(CUdevice *d) {
  *d = 0;
  return CUDA_SUCCESS;
}
CUresult cuDeviceGet(CUdevice *d, int ordinal) {
  *d = ordinal;
  return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
  *c = (CUcontext)(uintptr_t)0x1000;
  return CUDA_SUCCESS;
}
CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d) {
  const char *cc = getenv("HIPART_FAKE_CC");
  int arch = cc ? atoi(cc) : 90;
  if (a == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) *v = arch / 10;
  else if (a == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) *v = arch % 10;
  else *v = 0;
  return CUDA_SUCCESS;
}
CUresult cuModuleLoadData(CUmodule *m, const void *image) {
  if (memcmp(image, "\177ELF", 4) != 0) return CUDA_ERROR_INVALID_IMAGE;
  *m = (CUmodule)image;
  return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
  const unsigned char *img = (const unsigned char *)m;
  size_t n = image_size(img), len = strlen(name);
  for (size_t i = 0; i + len < n; i++) {
    if (memcmp(img + i, name, len + 1) == 0) {
      *f = (CUfunction)m;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_NOT_FOUND;
}
CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) { return CUDA_SUCCESS; }
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, CUstream stream, void **params, void **extra) {
  FILE *log = fopen(getenv("HIPART_FAKE_LOG"), "a");
  const char *types = getenv("HIPART_FAKE_PARAMS");
  if (!log || !types) return CUDA_ERROR_INVALID_VALUE;
  fprintf(log, "image=%zu grid=%u,%u,%u block=%u,%u,%u shared=%u params=", image_size((const unsigned char *)f), gx,
          gy, gz, bx, by, bz, shared);
  for (int i = 0; types[i]; i++) {
    if (types[i] == 'p') fprintf(log, "%llu ", (unsigned long long)*(uint64_t *)params[i]);
    else if (types[i] == 'i') fprintf(log, "%d ", *(int32_t *)params[i]);
    else fprintf(log, "%g ", (double)*(float *)params[i]);
  }
  fprintf(log, "\n");
  fclose(log);
  return CUDA_SUCCESS;
}
