// kernel_desc.cuh: how the library's kernels describe themselves to the host.
//
// Every entry point is declared with FMLA_KERNEL, which also defines a constant
// `fmla_desc_<entry>` (a KernelDesc): block size, query rows per CTA, pipeline stages, dynamic
// shared memory, element types and the name and size of its parameter struct. The host reads it
// with cuModuleGetGlobal, so those facts are written once, here in the kernel sources.
//
// Every struct the host and the kernels share is declared with FMLA_ABI_STRUCT from a list of its
// fields; FMLA_EXPORT_ABI(Name) defines `fmla_abi_<Name>`, its size and the offset, size and name
// of every field, which the tests compare with the C# mirror. FMLA_ABI_STRUCT also asserts that
// the struct has no implicit padding and a size that is a multiple of 8. KernelDesc is such a
// struct too: the host reads descriptors through its mirror FlashMla.Kernels.KernelDesc.
#pragma once
#include "base.cuh"

#define FMLA_ABI_FIELD_DECLARE(type, name) type name;
#define FMLA_ABI_FIELD_OFFSET(type, name) static_cast<int>(__builtin_offsetof(Self, name)),
#define FMLA_ABI_FIELD_SIZE(type, name) static_cast<int>(sizeof(type)),
#define FMLA_ABI_FIELD_NAME(type, name) #name " "

// The layout facts of `struct Name` (declared from FIELDS, inside namespace fmla): Abi<Name>
// and the packing asserts. FIELDS is a macro that applies its argument X to every field as
// X(type, name), in order.
#define FMLA_ABI_LAYOUT(Name, FIELDS)                                                              \
    template <>                                                                                    \
    struct Abi<Name> {                                                                             \
        using Self = Name;                                                                         \
        static constexpr int offsets[] = {FIELDS(FMLA_ABI_FIELD_OFFSET)};                          \
        static constexpr int sizes[] = {FIELDS(FMLA_ABI_FIELD_SIZE)};                              \
        static constexpr char names[] = FIELDS(FMLA_ABI_FIELD_NAME);                               \
    };                                                                                             \
    static_assert(abi_is_packed(static_cast<int>(sizeof(Name)), Abi<Name>::offsets, Abi<Name>::sizes), \
                  #Name " has implicit padding: order the fields by size or add explicit pad fields"); \
    static_assert(sizeof(Name) % 8 == 0, #Name " must be padded to a multiple of 8 bytes")

// Declares `struct Name` (inside namespace fmla) from FIELDS, with its FMLA_ABI_LAYOUT.
#define FMLA_ABI_STRUCT(Name, FIELDS)        \
    struct Name {                            \
        FIELDS(FMLA_ABI_FIELD_DECLARE)       \
    };                                       \
    FMLA_ABI_LAYOUT(Name, FIELDS)

namespace fmla {

// "FMLA" as a little-endian int32: the first word of every descriptor and layout record.
constexpr int kAbiMagic = 0x414c4d46;
// Bumped whenever KernelDesc or AbiLayout change shape; the host refuses other versions.
constexpr int kAbiVersion = 2;
constexpr int kParamStructNameBytes = 32;

// Element type codes, the values of FlashMla.Tensors.ElementType.
enum ElementCode : int { kElemNone = 0, kElemBf16 = 1, kElemFp16 = 2 };

// The exported layout of an ABI struct with N fields whose names take L bytes (space-separated).
template <int N, int L>
struct AbiLayout {
    int magic;
    int abi_version;
    int size;
    int count;
    int names_bytes;
    int offsets[N];
    int sizes[N];
    char names[L];
};

template <int N, int L>
constexpr AbiLayout<N, L> abi_layout(int size, const int (&offsets)[N], const int (&sizes)[N], const char (&names)[L]) {
    AbiLayout<N, L> r{};
    r.magic = kAbiMagic;
    r.abi_version = kAbiVersion;
    r.size = size;
    r.count = N;
    r.names_bytes = L;
    for (int i = 0; i < N; ++i) {
        r.offsets[i] = offsets[i];
        r.sizes[i] = sizes[i];
    }
    for (int i = 0; i < L; ++i) r.names[i] = names[i];
    return r;
}

// True when the fields follow each other without gaps and fill the struct exactly.
template <int N>
constexpr bool abi_is_packed(int size, const int (&offsets)[N], const int (&sizes)[N]) {
    int at = 0;
    for (int i = 0; i < N; ++i) {
        if (offsets[i] != at) return false;
        at += sizes[i];
    }
    return at == size;
}

// Layout facts of an ABI struct, specialised by FMLA_ABI_LAYOUT.
template <typename S>
struct Abi;

// The name of a kernel's parameter struct, NUL-padded.
typedef char ParamStructName[kParamStructNameBytes];

// The self-description of one kernel entry (12 × int32 + the parameter struct's name).
#define FMLA_KERNEL_DESC_FIELDS(X)                                                                 \
    X(int, magic)                                                                                  \
    X(int, abi_version)                                                                            \
    X(int, threads)                /* block size (x; y = z = 1) */                                 \
    X(int, rows_per_cta)           /* query rows per CTA; 0 for kernels that are not per-row */    \
    X(int, stages)                 /* K-tile pipeline stages; 0 when not pipelined */              \
    X(int, smem_bytes)             /* dynamic shared memory per CTA: this ... */                   \
    X(int, smem_bytes_per_request) /* ... plus this much per request of the batch */               \
    X(int, param_bytes)            /* sizeof the by-value parameter struct */                      \
    X(int, q_type)                 /* ElementCode of q, the KV cache and the output (none: n/a) */ \
    X(int, kv_type)                                                                                \
    X(int, out_type)                                                                               \
    X(int, head_dim)               /* the q/k head dimension it is built for; 0: any it accepts */ \
    X(ParamStructName, param_struct) /* e.g. "DecodeParams" */

struct KernelDesc {
    FMLA_KERNEL_DESC_FIELDS(FMLA_ABI_FIELD_DECLARE)

    constexpr KernelDesc rows(int value) const { KernelDesc d = *this; d.rows_per_cta = value; return d; }
    constexpr KernelDesc pipeline(int value) const { KernelDesc d = *this; d.stages = value; return d; }
    constexpr KernelDesc smem(int bytes, int bytes_per_request = 0) const {
        KernelDesc d = *this;
        d.smem_bytes = bytes;
        d.smem_bytes_per_request = bytes_per_request;
        return d;
    }
    constexpr KernelDesc dims(int qk_head_dim) const { KernelDesc d = *this; d.head_dim = qk_head_dim; return d; }
    constexpr KernelDesc types(int q, int kv, int out) const {
        KernelDesc d = *this;
        d.q_type = q;
        d.kv_type = kv;
        d.out_type = out;
        return d;
    }
};
FMLA_ABI_LAYOUT(KernelDesc, FMLA_KERNEL_DESC_FIELDS);

// Start of a descriptor: a kernel of `threads` threads per CTA; refine with rows(), pipeline(),
// smem() and types().
constexpr KernelDesc kernel_desc(int threads) {
    return KernelDesc{kAbiMagic, kAbiVersion, threads, 0, 0, 0, 0, 0, kElemNone, kElemNone, kElemNone, 0, {}};
}

// Completes a descriptor with its parameter struct's size and name (FMLA_KERNEL does this).
template <typename Params, int N>
constexpr KernelDesc with_params(KernelDesc d, const char (&name)[N]) {
    static_assert(N <= kParamStructNameBytes, "parameter struct name too long for KernelDesc");
    d.param_bytes = static_cast<int>(sizeof(Params));
    for (int i = 0; i < N; ++i) d.param_struct[i] = name[i];
    return d;
}

}  // namespace fmla

// Defines `fmla_abi_<Name>`, the layout of fmla::Name, in this module (at global scope).
#define FMLA_EXPORT_ABI(Name)                                                                      \
    extern "C" __attribute__((device)) const auto fmla_abi_##Name = fmla::abi_layout(             \
        static_cast<int>(sizeof(fmla::Name)), fmla::Abi<fmla::Name>::offsets, fmla::Abi<fmla::Name>::sizes, \
        fmla::Abi<fmla::Name>::names)

// Declares kernel `entry`, taking `const fmla::Params p` by value, described by DESC (a
// KernelDesc expression, e.g. fmla::kernel_desc(256).rows(64)), and defines its descriptor
// `fmla_desc_<entry>`. The launch bounds use DESC's thread count. Follow it with the body.
#define FMLA_KERNEL(entry, Params, DESC)                                                           \
    extern "C" __attribute__((device)) const fmla::KernelDesc fmla_desc_##entry =                 \
        fmla::with_params<fmla::Params>(DESC, #Params);                                            \
    extern "C" FMLA_GLOBAL FMLA_LAUNCH_BOUNDS((DESC).threads, 1) void entry(                      \
        const FMLA_GRID_CONSTANT fmla::Params p)
