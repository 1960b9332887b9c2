using System.Reflection;
using System.Runtime.InteropServices;
using FlashMla.Kernels;
using FlashMla.Mla;
using FlashMla.Mla.Cuda;
using FlashMla.Tensors;

namespace FlashMla.Tests.Kernels;

/// <summary>
/// The host against the kernels' own description of their ABI, read from the embedded PTX (no
/// GPU needed): every exported struct layout equals its C# mirror field for field, every entry
/// has a descriptor naming a mirrored parameter struct, and the shared constants agree.
/// </summary>
public sealed class KernelAbiTests
{
    private const string LayoutPrefix = "fmla_abi_";

    /// <summary>Exported layouts whose values, not a C# struct, are checked (<see cref="DecodeConstants_MatchTheHost"/>).</summary>
    private static readonly string[] ValueOnlyLayouts = ["DecodeConstants", "KvAppendConstants"];

    public static TheoryData<string, string> Modules
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var target in new[] { "sm_80", "sm_90a" })
            {
                foreach (var module in KernelLibrary.AvailableModules(target))
                {
                    data.Add(target, module);
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Modules))]
    public void Module_ExportsTheDescriptorLayoutAndTheSharedConstants(string target, string module)
    {
        var constants = Constants(target, module);
        Assert.True(constants.ContainsKey(LayoutPrefix + nameof(KernelDesc)), $"{target}/{module} does not export the KernelDesc layout: add FMLA_MODULE_ABI()");
        Assert.True(constants.ContainsKey("fmla_decode_constants"), $"{target}/{module} does not export fmla_decode_constants: add FMLA_MODULE_ABI()");
    }

    [Theory]
    [MemberData(nameof(Modules))]
    public void ExportedLayouts_EqualTheirCSharpMirrors(string target, string module)
    {
        var constants = Constants(target, module);
        var layouts = constants.Keys.Where(k => k.StartsWith(LayoutPrefix, StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(layouts);
        foreach (var name in layouts)
        {
            var layout = PtxConstants.ReadLayout(name, constants[name]);
            Assert.Equal(KernelDescriptor.AbiVersion, layout.AbiVersion);
            var structName = name[LayoutPrefix.Length..];
            if (ValueOnlyLayouts.Contains(structName))
            {
                continue;
            }

            AssertMirrors(Mirror(structName), layout, $"{target}/{module}");
        }
    }

    [Theory]
    [MemberData(nameof(Modules))]
    public void EveryEntry_DescribesItself_WithAMirroredParameterStruct(string target, string module)
    {
        var ptx = KernelLibrary.ReadPtx(target, module)!;
        var constants = Constants(target, module);
        var entries = KernelLibrary.EntryNames(ptx);
        Assert.NotEmpty(entries);
        foreach (var entry in entries)
        {
            Assert.True(
                constants.TryGetValue(KernelDescriptor.GlobalPrefix + entry, out var bytes),
                $"{target}/{module}: entry {entry} has no descriptor {KernelDescriptor.GlobalPrefix}{entry} (declare it with FMLA_KERNEL)");
            var descriptor = KernelDescriptor.Parse(bytes, module, entry, target);
            Assert.True(descriptor.Threads is > 0 and <= 1024 && descriptor.Threads % 32 == 0, $"{entry}: {descriptor.Threads} threads");
            Assert.True(
                constants.ContainsKey(LayoutPrefix + descriptor.ParamStruct),
                $"{target}/{module}: {entry} takes {descriptor.ParamStruct}, whose layout the module does not export (FMLA_EXPORT_ABI)");
            Assert.Equal(Marshal.SizeOf(Mirror(descriptor.ParamStruct)), descriptor.ParamBytes);
            var declared = ParamSizePattern(ptx, entry);
            Assert.Equal(descriptor.ParamBytes, declared);
        }
    }

    [Theory]
    [MemberData(nameof(Modules))]
    public void DecodeConstants_MatchTheHost(string target, string module)
    {
        var constants = Constants(target, module);
        var layout = PtxConstants.ReadLayout("DecodeConstants", constants[LayoutPrefix + "DecodeConstants"]);
        var values = constants["fmla_decode_constants"];
        int Value(string field)
        {
            var f = layout.Fields.Single(x => x.Name == field);
            return BitConverter.ToInt32(values, f.Offset);
        }

        Assert.Equal(DecodeSchedule.BlockSizeN, Value("block_n"));
        Assert.Equal(DecodeSchedule.FixedOverheadBlocks, Value("fixed_overhead_blocks"));
        Assert.Equal(MlaDecodeValidation.SupportedHeadDimV, Value("head_dim_v"));
        Assert.Equal(MlaDecodeValidation.SupportedHeadDims.Max(), Value("max_head_dim"));
        Assert.Equal((int)MlaInputError.SequenceLengthOutOfRange, Value("error_seqlen"));
        Assert.Equal((int)MlaInputError.BlockIdOutOfRange, Value("error_block_id"));
        Assert.Equal(ErrorRecord.SharedMemoryFlag, Value("error_shared_memory"));
        Assert.Equal(ErrorRecord.MergeFlag, Value("error_merge"));
        Assert.Equal(CudaDecodePlan.MinRowsPerCta, Value("min_rows_per_cta"));
        Assert.Equal(CudaDecodePlan.SplitRowGroup, Value("split_row_group"));
        Assert.Equal((int)ElementType.BFloat16, Value("elem_bf16"));
        Assert.Equal((int)ElementType.Float16, Value("elem_fp16"));
        Assert.Equal(KernelDescriptor.AbiVersion, Value("abi_version"));
        Assert.Equal(layout.Fields.Count, layout.Size / sizeof(int));
    }

    [Fact]
    public void KvAppendConstants_MatchTheHost()
    {
        foreach (var target in KernelLibrary.TargetsOf(CudaKvCacheWriter.ModuleName))
        {
            var constants = Constants(target, CudaKvCacheWriter.ModuleName);
            var layout = PtxConstants.ReadLayout("KvAppendConstants", constants[LayoutPrefix + "KvAppendConstants"]);
            var values = constants["fmla_kv_append_constants"];
            int Value(string field) => BitConverter.ToInt32(values, layout.Fields.Single(x => x.Name == field).Offset);

            Assert.Equal(KvCacheAppendValidation.CompressedDim, Value("nope_dim"));
            Assert.Equal(KvCacheAppendValidation.RopeDim, Value("rope_dim"));
            Assert.Equal(KvCacheAppendValidation.PaddingSlot, Value("padding_slot"));
            Assert.Equal((int)MlaInputError.SlotOutOfRange, Value("error_slot"));
            Assert.Equal(KvAppendErrorRecord.SlotFlag, Value("error_slot"));
            Assert.Equal(layout.Fields.Count, layout.Size / sizeof(int));
        }
    }

    [Fact]
    public void KvAppendKernel_DescribesItsRowsPerCta()
    {
        foreach (var target in KernelLibrary.TargetsOf(CudaKvCacheWriter.ModuleName))
        {
            var constants = Constants(target, CudaKvCacheWriter.ModuleName);
            var entry = Assert.Single(KernelLibrary.EntryNames(KernelLibrary.ReadPtx(target, CudaKvCacheWriter.ModuleName)!));
            var descriptor = KernelDescriptor.Parse(constants[KernelDescriptor.GlobalPrefix + entry], CudaKvCacheWriter.ModuleName, entry, target);
            Assert.Equal(nameof(KvAppendParams), descriptor.ParamStruct);
            Assert.True(descriptor.RowsPerCta > 0 && descriptor.Threads % descriptor.RowsPerCta == 0, $"{descriptor}: whole rows per CTA");
            Assert.Equal(0, descriptor.SharedMemoryBytes);
        }
    }

    private static IReadOnlyDictionary<string, byte[]> Constants(string target, string module) =>
        PtxConstants.Read(KernelLibrary.ReadPtx(target, module) ?? throw new InvalidOperationException($"{target}/{module} is not embedded"));

    /// <summary>The parameter size the PTX declares for an entry: <c>.param .align 8 .b8 entry_param_0[n]</c>.</summary>
    private static int ParamSizePattern(string ptx, string entry)
    {
        var marker = $".b8 {entry}_param_0[";
        var at = ptx.IndexOf(marker, StringComparison.Ordinal);
        Assert.True(at >= 0, $"{entry}: no by-value parameter in the PTX");
        var end = ptx.IndexOf(']', at);
        return int.Parse(ptx.AsSpan(at + marker.Length, end - at - marker.Length), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The C# mirror of a kernel struct: the one sequential value type of the library with that name.</summary>
    private static Type Mirror(string structName)
    {
        var candidates = typeof(KernelLibrary).Assembly.GetTypes()
            .Where(t => t.Name == structName && t.IsValueType && t.StructLayoutAttribute?.Value == LayoutKind.Sequential)
            .ToArray();
        Assert.True(candidates.Length == 1, $"the kernels share struct {structName}; the library needs exactly one sequential C# mirror of that name (found {candidates.Length})");
        return candidates[0];
    }

    private static void AssertMirrors(Type mirror, AbiLayout layout, string where)
    {
        var fields = mirror.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .Select(f => (Name: PropertyName(f.Name), Offset: Marshal.OffsetOf(mirror, f.Name).ToInt32(), Size: Marshal.SizeOf(f.FieldType)))
            .OrderBy(f => f.Offset)
            .ToArray();
        var context = $"{where}: {layout.Struct} vs {mirror.FullName}";
        Assert.True(layout.Size == Marshal.SizeOf(mirror), $"{context}: the kernels' struct is {layout.Size} bytes, the mirror {Marshal.SizeOf(mirror)}");
        Assert.True(
            fields.Length == layout.Fields.Count,
            $"{context}: {layout.Fields.Count} fields [{string.Join(", ", layout.Fields.Select(f => f.Name))}] vs {fields.Length} [{string.Join(", ", fields.Select(f => f.Name))}]");
        for (var i = 0; i < fields.Length; i++)
        {
            var expected = layout.Fields[i];
            var actual = fields[i];
            Assert.True(
                Normalize(expected.Name) == Normalize(actual.Name) && expected.Offset == actual.Offset && expected.Size == actual.Size,
                $"{context}: field {i} is {expected.Name} at {expected.Offset} ({expected.Size} bytes) in the kernels, {actual.Name} at {actual.Offset} ({actual.Size} bytes) in C#");
        }
    }

    /// <summary>The property of a record's backing field (<c>&lt;X&gt;k__BackingField</c> → X), else the field's name.</summary>
    private static string PropertyName(string field) =>
        field.StartsWith('<') && field.EndsWith(">k__BackingField", StringComparison.Ordinal) ? field[1..field.IndexOf('>', StringComparison.Ordinal)] : field;

    private static string Normalize(string name) => name.Replace("_", string.Empty, StringComparison.Ordinal).ToUpperInvariant();
}
