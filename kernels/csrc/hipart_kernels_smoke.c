/* Smoke test of libhipart_kernels: lists the embedded kernels, then initialises the driver.
 * Exit status 0 when the library works; without a CUDA driver it says so and exits 0 only with
 * --allow-no-driver (the CPU-only CI build), 2 otherwise. */
#include <stdio.h>
#include <string.h>

#include "hipart_kernels.h"

int main(int argc, char **argv) {
  int allow_no_driver = argc > 1 && strcmp(argv[1], "--allow-no-driver") == 0;
  printf("libhipart_kernels: %d kernels, triton %s\n", hipart_kernel_count(), hipart_triton_version());
  for (int i = 0; i < hipart_kernel_count(); i++) {
    const char *name;
    int archs[8], n = 0;
    hipart_kernel_info(i, &name, archs, 8, &n);
    printf("  %-24s", name);
    for (int j = 0; j < n && j < 8; j++) {
      int regs = 0, smem = 0;
      hipart_kernel_resources(i, archs[j], &regs, &smem);
      printf("  sm_%d: %3d regs %6d B smem", archs[j], regs, smem);
    }
    printf("\n");
  }
  int rc = hipart_init();
  if (rc == HIPART_ERR_NO_DRIVER) {
    printf("%s\n", hipart_last_error());
    return allow_no_driver ? 0 : 2;
  }
  if (rc) {
    printf("init failed: %s\n", hipart_last_error());
    return 1;
  }
  printf("device arch sm_%d\n", hipart_device_arch());
  return 0;
}
