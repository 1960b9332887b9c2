using System.Globalization;
using System.Text;

namespace FlashMla.Cuda;

/// <summary>A compute capability, e.g. 9.0 for H100/H200.</summary>
/// <param name="Major">The major version.</param>
/// <param name="Minor">The minor version.</param>
public readonly record struct CudaComputeCapability(int Major, int Minor) : IComparable<CudaComputeCapability>
{
    /// <summary>10·major + minor, e.g. 90.</summary>
    public int Value => (Major * 10) + Minor;

    /// <inheritdoc/>
    public int CompareTo(CudaComputeCapability other) => Value.CompareTo(other.Value);

    /// <summary>Formats as "major.minor".</summary>
    /// <returns>The text.</returns>
    public override string ToString() => $"{Major.ToString(CultureInfo.InvariantCulture)}.{Minor.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Compares by <see cref="Value"/>.</summary>
    /// <param name="left">The left operand.</param>
    /// <param name="right">The right operand.</param>
    /// <returns>The comparison.</returns>
    public static bool operator <(CudaComputeCapability left, CudaComputeCapability right) => left.Value < right.Value;

    /// <summary>Compares by <see cref="Value"/>.</summary>
    /// <param name="left">The left operand.</param>
    /// <param name="right">The right operand.</param>
    /// <returns>The comparison.</returns>
    public static bool operator >(CudaComputeCapability left, CudaComputeCapability right) => left.Value > right.Value;

    /// <summary>Compares by <see cref="Value"/>.</summary>
    /// <param name="left">The left operand.</param>
    /// <param name="right">The right operand.</param>
    /// <returns>The comparison.</returns>
    public static bool operator <=(CudaComputeCapability left, CudaComputeCapability right) => left.Value <= right.Value;

    /// <summary>Compares by <see cref="Value"/>.</summary>
    /// <param name="left">The left operand.</param>
    /// <param name="right">The right operand.</param>
    /// <returns>The comparison.</returns>
    public static bool operator >=(CudaComputeCapability left, CudaComputeCapability right) => left.Value >= right.Value;
}

/// <summary>
/// Device attributes (<c>CUdevice_attribute</c>, cuda.h). Only the ones this library reads are
/// named; <see cref="CudaDevice.GetAttribute(CudaDeviceAttribute)"/> accepts any value.
/// </summary>
public enum CudaDeviceAttribute
{
    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK.</summary>
    MaxThreadsPerBlock = 1,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X.</summary>
    MaxGridDimX = 5,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y.</summary>
    MaxGridDimY = 6,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z.</summary>
    MaxGridDimZ = 7,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK (without opt-in).</summary>
    MaxSharedMemoryPerBlock = 8,

    /// <summary>CU_DEVICE_ATTRIBUTE_WARP_SIZE.</summary>
    WarpSize = 10,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK.</summary>
    MaxRegistersPerBlock = 12,

    /// <summary>CU_DEVICE_ATTRIBUTE_CLOCK_RATE (kHz).</summary>
    ClockRate = 13,

    /// <summary>CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT.</summary>
    MultiprocessorCount = 16,

    /// <summary>CU_DEVICE_ATTRIBUTE_PCI_BUS_ID.</summary>
    PciBusId = 33,

    /// <summary>CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID.</summary>
    PciDeviceId = 34,

    /// <summary>CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE (kHz).</summary>
    MemoryClockRate = 36,

    /// <summary>CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH (bits).</summary>
    GlobalMemoryBusWidth = 37,

    /// <summary>CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE (bytes).</summary>
    L2CacheSize = 38,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR.</summary>
    MaxThreadsPerMultiprocessor = 39,

    /// <summary>CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID.</summary>
    PciDomainId = 50,

    /// <summary>CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR.</summary>
    ComputeCapabilityMajor = 75,

    /// <summary>CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR.</summary>
    ComputeCapabilityMinor = 76,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR (bytes).</summary>
    MaxSharedMemoryPerMultiprocessor = 81,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR.</summary>
    MaxRegistersPerMultiprocessor = 82,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN (bytes).</summary>
    MaxSharedMemoryPerBlockOptin = 97,

    /// <summary>CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR.</summary>
    MaxBlocksPerMultiprocessor = 106,

    /// <summary>CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH.</summary>
    ClusterLaunch = 120,

    /// <summary>CU_DEVICE_ATTRIBUTE_TENSOR_MAP_ACCESS_SUPPORTED.</summary>
    TensorMapAccessSupported = 127,
}

/// <summary>
/// A CUDA device and its properties. Querying properties needs no context.
/// </summary>
public sealed unsafe class CudaDevice
{
    internal CudaDevice(CudaDriver driver, int ordinal, int handle)
    {
        Driver = driver;
        Ordinal = ordinal;
        Handle = handle;
    }

    /// <summary>The driver the device belongs to.</summary>
    public CudaDriver Driver { get; }

    /// <summary>The device index (0-based, as in <c>CUDA_VISIBLE_DEVICES</c> order).</summary>
    public int Ordinal { get; }

    /// <summary>The driver's <c>CUdevice</c> value.</summary>
    public int Handle { get; }

    /// <summary>The device name, e.g. "NVIDIA H200".</summary>
    public string Name
    {
        get
        {
            const int Length = 256;
            var buffer = stackalloc byte[Length];
            Driver.Check(Driver.Api.cuDeviceGetName(buffer, Length, Handle));
            var n = 0;
            while (n < Length && buffer[n] != 0)
            {
                n++;
            }

            return Encoding.UTF8.GetString(buffer, n);
        }
    }

    /// <summary>The compute capability, e.g. 9.0.</summary>
    public CudaComputeCapability ComputeCapability =>
        new(GetAttribute(CudaDeviceAttribute.ComputeCapabilityMajor), GetAttribute(CudaDeviceAttribute.ComputeCapabilityMinor));

    /// <summary>The number of streaming multiprocessors.</summary>
    public int MultiprocessorCount => GetAttribute(CudaDeviceAttribute.MultiprocessorCount);

    /// <summary>Total device memory in bytes (<c>cuDeviceTotalMem_v2</c>).</summary>
    public long TotalMemoryBytes
    {
        get
        {
            nuint bytes;
            Driver.Check(Driver.Api.cuDeviceTotalMem(&bytes, Handle));
            return (long)bytes;
        }
    }

    /// <summary>The L2 cache size in bytes.</summary>
    public int L2CacheSizeBytes => GetAttribute(CudaDeviceAttribute.L2CacheSize);

    /// <summary>Shared memory per block without opt-in, in bytes (48 KiB).</summary>
    public int MaxSharedMemoryPerBlock => GetAttribute(CudaDeviceAttribute.MaxSharedMemoryPerBlock);

    /// <summary>Shared memory per block with opt-in (<c>cuFuncSetAttribute</c>), in bytes (227 KiB on sm_90).</summary>
    public int MaxSharedMemoryPerBlockOptin => GetAttribute(CudaDeviceAttribute.MaxSharedMemoryPerBlockOptin);

    /// <summary>Shared memory per multiprocessor in bytes.</summary>
    public int MaxSharedMemoryPerMultiprocessor => GetAttribute(CudaDeviceAttribute.MaxSharedMemoryPerMultiprocessor);

    /// <summary>Maximum threads per block.</summary>
    public int MaxThreadsPerBlock => GetAttribute(CudaDeviceAttribute.MaxThreadsPerBlock);

    /// <summary>Maximum resident threads per multiprocessor.</summary>
    public int MaxThreadsPerMultiprocessor => GetAttribute(CudaDeviceAttribute.MaxThreadsPerMultiprocessor);

    /// <summary>Warp size in threads.</summary>
    public int WarpSize => GetAttribute(CudaDeviceAttribute.WarpSize);

    /// <summary>32-bit registers per block.</summary>
    public int MaxRegistersPerBlock => GetAttribute(CudaDeviceAttribute.MaxRegistersPerBlock);

    /// <summary>Maximum grid size in x.</summary>
    public int MaxGridDimX => GetAttribute(CudaDeviceAttribute.MaxGridDimX);

    /// <summary>Peak SM clock in kHz, or null when the driver no longer reports it.</summary>
    public int? ClockRateKHz => TryGetAttribute(CudaDeviceAttribute.ClockRate);

    /// <summary>Peak memory clock in kHz, or null when the driver no longer reports it.</summary>
    public int? MemoryClockRateKHz => TryGetAttribute(CudaDeviceAttribute.MemoryClockRate);

    /// <summary>Global memory bus width in bits, or null when not reported.</summary>
    public int? MemoryBusWidthBits => TryGetAttribute(CudaDeviceAttribute.GlobalMemoryBusWidth);

    /// <summary>Whether thread-block clusters can be launched (sm_90+).</summary>
    public bool SupportsClusterLaunch => TryGetAttribute(CudaDeviceAttribute.ClusterLaunch) is > 0;

    /// <summary>The PCI location as "domain:bus:device", e.g. "0000:1b:00".</summary>
    public string PciLocation =>
        string.Create(
            CultureInfo.InvariantCulture,
            $"{TryGetAttribute(CudaDeviceAttribute.PciDomainId) ?? 0:x4}:{TryGetAttribute(CudaDeviceAttribute.PciBusId) ?? 0:x2}:{TryGetAttribute(CudaDeviceAttribute.PciDeviceId) ?? 0:x2}");

    /// <summary>Reads a device attribute.</summary>
    /// <param name="attribute">The attribute (any <c>CUdevice_attribute</c> value).</param>
    /// <returns>The value.</returns>
    /// <exception cref="CudaException">The driver rejected the attribute.</exception>
    public int GetAttribute(CudaDeviceAttribute attribute)
    {
        int value;
        Driver.Check(Driver.Api.cuDeviceGetAttribute(&value, (int)attribute, Handle));
        return value;
    }

    /// <summary>Reads a device attribute, or null when the driver rejects it.</summary>
    /// <param name="attribute">The attribute.</param>
    /// <returns>The value or null.</returns>
    public int? TryGetAttribute(CudaDeviceAttribute attribute)
    {
        int value;
        return Driver.Api.cuDeviceGetAttribute(&value, (int)attribute, Handle) == CudaResult.Success ? value : null;
    }

    /// <summary>Formats as "#0 NVIDIA H200 (sm_90)".</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        var cc = ComputeCapability;
        return string.Create(CultureInfo.InvariantCulture, $"#{Ordinal} {Name} (sm_{cc.Major}{cc.Minor})");
    }
}
