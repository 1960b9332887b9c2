/* A stand-in for libnvidia-ml with the entry points the bench binds, for the NVML binding's tests
 * on machines without a driver. One device: PCI bus id 0000:1b:00, NVML index 0. */
#include <string.h>

static int initialised = 0;
static void *const device = (void *)0x5a5a;

int nvmlInit_v2(void) { initialised++; return 0; }
int nvmlShutdown(void) { if (initialised == 0) return 1; initialised--; return 0; }

int nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    if (!initialised) return 1;
    strncpy(version, "580.65.06", length);
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle)
{
    if (!initialised) return 1;
    if (index != 0) return 2;              /* NVML_ERROR_INVALID_ARGUMENT */
    *handle = device;
    return 0;
}

int nvmlDeviceGetHandleByPciBusId_v2(const char *busId, void **handle)
{
    if (!initialised) return 1;
    if (strcmp(busId, "0000:1b:00") != 0) return 6;   /* NVML_ERROR_NOT_FOUND */
    *handle = device;
    return 0;
}

int nvmlDeviceGetClockInfo(void *handle, int type, unsigned int *mhz)
{
    if (!initialised) return 1;
    if (handle != device) return 2;
    if (type == 1) { *mhz = 1755; return 0; }       /* NVML_CLOCK_SM */
    if (type == 2) { *mhz = 3201; return 0; }       /* NVML_CLOCK_MEM */
    return 3;                                       /* NVML_ERROR_NOT_SUPPORTED */
}

int nvmlDeviceGetMaxClockInfo(void *handle, int type, unsigned int *mhz)
{
    if (!initialised) return 1;
    if (handle != device || type != 1) return 2;
    *mhz = 1980;
    return 0;
}

const char *nvmlErrorString(int result)
{
    switch (result) {
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 6: return "Not Found";
    default: return "Unknown Error";
    }
}
