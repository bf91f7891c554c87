/* libhipart_kernels runtime: opens the CUDA driver with dlopen, picks the cubin for the device's compute
 * capability, loads it once per context and launches. The generated file holds the cubins and launchers. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "hipart_internal.h"
#include "hipart_kernels.h"

static __thread char last_error[512];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int hipart_fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return code;
}

const char *hipart_last_error(void) { return last_error; }
const char *hipart_triton_version(void) { return hipart_cubin_triton_version; }

/* The few driver entry points used, resolved from libcuda.so.1 (no link-time dependency on libcuda). */
static struct {
  int state; /* 0 = not tried, 1 = ok, <0 = error code */
  void *lib;
  CUresult (*Init)(unsigned int);
  CUresult (*GetErrorString)(CUresult, const char **);
  CUresult (*CtxGetCurrent)(CUcontext *);
  CUresult (*CtxSetCurrent)(CUcontext);
  CUresult (*CtxGetDevice)(CUdevice *);
  CUresult (*DeviceGet)(CUdevice *, int);
  CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
  CUresult (*ModuleLoadData)(CUmodule *, const void *);
  CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*FuncSetAttribute)(CUfunction, CUfunction_attribute, int);
  CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                           CUstream, void **, void **);
} cu;

static int cuda_fail(const char *what, CUresult r) {
  const char *s = NULL;
  if (cu.GetErrorString) cu.GetErrorString(r, &s);
  return hipart_fail(HIPART_ERR_CUDA, "%s failed: %s (CUresult %d)", what, s ? s : "unknown", (int)r);
}

#define SYM(field, name)                                                                  \
  do {                                                                                    \
    *(void **)(&cu.field) = dlsym(cu.lib, name);                                          \
    if (!cu.field) return hipart_fail(HIPART_ERR_NO_DRIVER, "libcuda.so.1 lacks %s", name); \
  } while (0)

static int load_driver(void) {
  cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!cu.lib) cu.lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
  if (!cu.lib) return hipart_fail(HIPART_ERR_NO_DRIVER, "no CUDA driver: %s", dlerror());
  SYM(Init, "cuInit");
  SYM(GetErrorString, "cuGetErrorString");
  SYM(CtxGetCurrent, "cuCtxGetCurrent");
  SYM(CtxSetCurrent, "cuCtxSetCurrent");
  SYM(CtxGetDevice, "cuCtxGetDevice");
  SYM(DeviceGet, "cuDeviceGet");
  SYM(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  SYM(DeviceGetAttribute, "cuDeviceGetAttribute");
  SYM(ModuleLoadData, "cuModuleLoadData");
  SYM(ModuleGetFunction, "cuModuleGetFunction");
  SYM(FuncSetAttribute, "cuFuncSetAttribute");
  SYM(LaunchKernel, "cuLaunchKernel");
  CUresult r = cu.Init(0);
  if (r != CUDA_SUCCESS) return cuda_fail("cuInit", r);
  return HIPART_OK;
}

int hipart_init(void) {
  pthread_mutex_lock(&lock);
  if (cu.state == 0) cu.state = load_driver() == HIPART_OK ? 1 : -1;
  int ok = cu.state == 1;
  pthread_mutex_unlock(&lock);
  if (!ok && !last_error[0]) hipart_fail(HIPART_ERR_NO_DRIVER, "CUDA driver failed to load earlier");
  return ok ? HIPART_OK : HIPART_ERR_NO_DRIVER;
}

/* Current context, or the device-0 primary context made current when the thread has none. */
static int current_context(CUcontext *ctx, CUdevice *dev) {
  CUresult r = cu.CtxGetCurrent(ctx);
  if (r != CUDA_SUCCESS) return cuda_fail("cuCtxGetCurrent", r);
  if (!*ctx) {
    if ((r = cu.DeviceGet(dev, 0)) != CUDA_SUCCESS) return cuda_fail("cuDeviceGet", r);
    if ((r = cu.DevicePrimaryCtxRetain(ctx, *dev)) != CUDA_SUCCESS) return cuda_fail("cuDevicePrimaryCtxRetain", r);
    if ((r = cu.CtxSetCurrent(*ctx)) != CUDA_SUCCESS) return cuda_fail("cuCtxSetCurrent", r);
  }
  if ((r = cu.CtxGetDevice(dev)) != CUDA_SUCCESS) return cuda_fail("cuCtxGetDevice", r);
  return HIPART_OK;
}

static int arch_of(CUdevice dev) {
  int major = 0, minor = 0;
  cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  return major * 10 + minor;
}

int hipart_device_arch(void) {
  int rc = hipart_init();
  if (rc) return rc;
  CUcontext ctx;
  CUdevice dev;
  if ((rc = current_context(&ctx, &dev))) return rc;
  return arch_of(dev);
}

/* A cubin for sm_XY runs on X.Z with Z >= Y (same major); an arch-specific one (sm_90a) only on X.Y. */
static const hipart_cubin_t *pick_cubin(const hipart_kernel_t *k, int arch) {
  const hipart_cubin_t *best = NULL;
  for (int i = 0; i < k->num_cubins; i++) {
    const hipart_cubin_t *c = &k->cubins[i];
    int ok = c->arch_specific ? c->arch == arch : (c->arch / 10 == arch / 10 && c->arch <= arch);
    if (ok && (!best || c->arch > best->arch)) best = c;
  }
  return best;
}

static int load_kernel(hipart_kernel_t *k, int slot, CUcontext ctx, CUdevice dev) {
  int arch = arch_of(dev);
  const hipart_cubin_t *c = pick_cubin(k, arch);
  if (!c) return hipart_fail(HIPART_ERR_NO_CUBIN, "%s: no cubin for sm_%d in this build", k->name, arch);
  CUmodule mod;
  CUfunction fn;
  CUresult r = cu.ModuleLoadData(&mod, c->image);
  if (r != CUDA_SUCCESS) return cuda_fail("cuModuleLoadData", r);
  if ((r = cu.ModuleGetFunction(&fn, mod, k->symbol)) != CUDA_SUCCESS) return cuda_fail("cuModuleGetFunction", r);
  if (c->shared > 48 * 1024) {
    r = cu.FuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, c->shared);
    if (r != CUDA_SUCCESS) return cuda_fail("cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)", r);
  }
  k->loaded[slot].module = mod;
  k->loaded[slot].function = fn;
  k->loaded[slot].cubin = c;
  k->loaded[slot].ctx = ctx;
  return HIPART_OK;
}

int hipart_launch(hipart_kernel_t *k, void *stream, unsigned gx, unsigned gy, unsigned gz, void **params) {
  int rc = hipart_init();
  if (rc) return rc;
  if ((unsigned long long)gx * gy * gz == 0) return HIPART_OK;
  CUcontext ctx;
  CUdevice dev;
  if ((rc = current_context(&ctx, &dev))) return rc;
  pthread_mutex_lock(&lock);
  int slot = 0;
  while (slot < HIPART_MAX_CONTEXTS && k->loaded[slot].ctx && k->loaded[slot].ctx != ctx) slot++;
  if (slot == HIPART_MAX_CONTEXTS)
    rc = hipart_fail(HIPART_ERR_CUDA, "%s: more than %d CUDA contexts", k->name, HIPART_MAX_CONTEXTS);
  else if (!k->loaded[slot].ctx)
    rc = load_kernel(k, slot, ctx, dev); /* first launch in this context */
  CUfunction fn = rc ? NULL : k->loaded[slot].function;
  int shared = rc ? 0 : k->loaded[slot].cubin->shared;
  pthread_mutex_unlock(&lock);
  if (rc) return rc;
  CUresult r = cu.LaunchKernel(fn, gx, gy, gz, 32u * (unsigned)k->num_warps, 1, 1, (unsigned)shared,
                               (CUstream)stream, params, NULL);
  if (r != CUDA_SUCCESS) return cuda_fail(k->name, r);
  return HIPART_OK;
}

int hipart_kernel_count(void) { return hipart_kernel_table_size; }

int hipart_kernel_info(int i, const char **name, int *archs, int max_archs, int *num_archs) {
  if (i < 0 || i >= hipart_kernel_table_size) return hipart_fail(HIPART_ERR_INDEX, "no kernel %d", i);
  const hipart_kernel_t *k = hipart_kernel_table[i];
  if (name) *name = k->name;
  for (int j = 0; j < k->num_cubins && j < max_archs; j++) archs[j] = k->cubins[j].arch;
  if (num_archs) *num_archs = k->num_cubins;
  return HIPART_OK;
}

int hipart_kernel_resources(int i, int arch, int *registers, int *shared_bytes) {
  if (i < 0 || i >= hipart_kernel_table_size) return hipart_fail(HIPART_ERR_INDEX, "no kernel %d", i);
  const hipart_kernel_t *k = hipart_kernel_table[i];
  for (int j = 0; j < k->num_cubins; j++) {
    if (k->cubins[j].arch == arch) {
      if (registers) *registers = k->cubins[j].registers;
      if (shared_bytes) *shared_bytes = k->cubins[j].shared;
      return HIPART_OK;
    }
  }
  return -1;
}
