using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using FlashMla.Tensors;

namespace FlashMla.Kernels;

/// <summary>
/// What a kernel of the library says about itself (its <c>fmla_desc_&lt;entry&gt;</c> constant,
/// written by <c>FMLA_KERNEL</c> in kernels/include/kernel_desc.cuh): how to launch it and what it
/// computes on. The host reads it from the loaded module, so no launch fact is written twice.
/// </summary>
/// <param name="Module">The module (the .cu file's base name).</param>
/// <param name="Entry">The entry name.</param>
/// <param name="Target">The PTX target the module was loaded for ("sm_80", "sm_90a").</param>
/// <param name="Threads">Threads per CTA (a one-dimensional block).</param>
/// <param name="RowsPerCta">Query rows per CTA; 0 for kernels that do not work per row.</param>
/// <param name="Stages">K-tile pipeline stages; 0 when the kernel is not pipelined.</param>
/// <param name="SharedMemoryBytes">Dynamic shared memory per CTA (plus <paramref name="SharedMemoryBytesPerRequest"/> per request).</param>
/// <param name="SharedMemoryBytesPerRequest">Dynamic shared memory per request of the batch.</param>
/// <param name="ParamBytes">The size of the by-value parameter struct.</param>
/// <param name="ParamStruct">The parameter struct's name (its C# mirror has the same name).</param>
/// <param name="QueryType">The element type of q, or null when the kernel does not read q.</param>
/// <param name="KvType">The element type of the KV cache, or null.</param>
/// <param name="OutputType">The element type of the output, or null.</param>
/// <param name="HeadDim">The q/k head dimension the kernel is built for; 0 when it takes any the API accepts.</param>
public sealed record KernelDescriptor(
    string Module,
    string Entry,
    string Target,
    int Threads,
    int RowsPerCta,
    int Stages,
    int SharedMemoryBytes,
    int SharedMemoryBytesPerRequest,
    int ParamBytes,
    string ParamStruct,
    ElementType? QueryType,
    ElementType? KvType,
    ElementType? OutputType,
    int HeadDim = 0)
{
    /// <summary>The prefix of descriptor constants: <c>fmla_desc_&lt;entry&gt;</c>.</summary>
    public const string GlobalPrefix = "fmla_desc_";

    /// <summary>"FMLA", the first word of every descriptor (<c>kAbiMagic</c>).</summary>
    internal const int AbiMagic = 0x414c4d46;

    /// <summary>The descriptor format the host understands (<c>kAbiVersion</c>).</summary>
    internal const int AbiVersion = 2;

    /// <summary>Dynamic shared memory of one CTA for a batch of <paramref name="batch"/> requests.</summary>
    /// <param name="batch">b (only counts when <see cref="SharedMemoryBytesPerRequest"/> is not 0).</param>
    /// <returns>Bytes.</returns>
    /// <exception cref="OverflowException">More than 2 GiB.</exception>
    public int SharedMemoryBytesFor(int batch) => checked(SharedMemoryBytes + (SharedMemoryBytesPerRequest * batch));

    /// <summary>Formats as "entry (module, target): 256 threads, 64 rows/CTA, 2 stages, 230912 B shared memory".</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        var text = new StringBuilder().Append(CultureInfo.InvariantCulture, $"{Entry} ({Module}, {Target}): {Threads} threads");
        if (RowsPerCta > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $", {RowsPerCta} rows/CTA");
        }

        if (Stages > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $", {Stages} stage{(Stages == 1 ? string.Empty : "s")}");
        }

        if (HeadDim > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $", head dim {HeadDim}");
        }

        text.Append(CultureInfo.InvariantCulture, $", {SharedMemoryBytes} B shared memory");
        if (SharedMemoryBytesPerRequest > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $" + {SharedMemoryBytesPerRequest} B per request");
        }

        return text.ToString();
    }

    /// <summary>Decodes the bytes of a <c>fmla_desc_&lt;entry&gt;</c> constant.</summary>
    /// <param name="bytes">The constant's bytes (at least the size of <see cref="KernelDesc"/>).</param>
    /// <param name="module">The module.</param>
    /// <param name="entry">The entry.</param>
    /// <param name="target">The target.</param>
    /// <returns>The descriptor.</returns>
    /// <exception cref="InvalidOperationException">The bytes are not a descriptor of the version the host understands.</exception>
    internal static unsafe KernelDescriptor Parse(ReadOnlySpan<byte> bytes, string module, string entry, string target)
    {
        var where = $"kernel {entry} of module {module} ({target})";
        if (bytes.Length < sizeof(KernelDesc))
        {
            throw new InvalidOperationException($"The descriptor of {where} has {bytes.Length} bytes; a KernelDesc has {sizeof(KernelDesc)}.");
        }

        var d = MemoryMarshal.Read<KernelDesc>(bytes);
        if (d.Magic != AbiMagic)
        {
            throw new InvalidOperationException($"The descriptor of {where} does not start with the KernelDesc magic (0x{d.Magic:x8}).");
        }

        if (d.AbiVersion != AbiVersion)
        {
            throw new InvalidOperationException($"The descriptor of {where} has ABI version {d.AbiVersion}; this build of the library reads version {AbiVersion}. Rebuild the PTX (scripts/build-kernels.sh).");
        }

        var name = new ReadOnlySpan<byte>(d.ParamStruct, KernelDesc.ParamStructBytes);
        var length = name.IndexOf((byte)0);
        var paramStruct = Encoding.ASCII.GetString(length < 0 ? name : name[..length]);
        return new KernelDescriptor(
            module,
            entry,
            target,
            d.Threads,
            d.RowsPerCta,
            d.Stages,
            d.SmemBytes,
            d.SmemBytesPerRequest,
            d.ParamBytes,
            paramStruct,
            ElementOf(d.QType, where),
            ElementOf(d.KvType, where),
            ElementOf(d.OutType, where),
            d.HeadDim);
    }

    private static ElementType? ElementOf(int code, string where) =>
        code == 0 ? null
        : Enum.IsDefined((ElementType)code) ? (ElementType)code
        : throw new InvalidOperationException($"The descriptor of {where} names element code {code}, which this build of the library does not know.");
}

/// <summary>
/// The C struct <c>KernelDesc</c> of kernels/include/kernel_desc.cuh, field for field (pinned
/// against the modules' exported layout by the tests).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct KernelDesc
{
    public const int ParamStructBytes = 32;

    public int Magic;
    public int AbiVersion;
    public int Threads;
    public int RowsPerCta;
    public int Stages;
    public int SmemBytes;
    public int SmemBytesPerRequest;
    public int ParamBytes;
    public int QType;
    public int KvType;
    public int OutType;
    public int HeadDim;
    public fixed byte ParamStruct[ParamStructBytes];
}
