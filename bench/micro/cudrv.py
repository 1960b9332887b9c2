"""A small ctypes binding of the CUDA driver API for the microbenchmarks and kernel checks in
bench/micro: PTX modules with their JIT logs, kernel launches with by-value parameter structs,
and tiled tensor maps. Device memory, streams and events come from PyTorch (which makes the
device's primary context current)."""
import ctypes as C
import struct

import torch

_cuda = C.CDLL("libcuda.so.1")

CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 3, 4
CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 5, 6
CU_JIT_LOG_VERBOSE = 12
CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, CU_FUNC_ATTRIBUTE_NUM_REGS = 3, 4
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
TMAP_BF16, TMAP_F16, TMAP_F32 = 9, 6, 7
SWIZZLE_NONE, SWIZZLE_128B = 0, 3


def check(rc, what):
    if rc != 0:
        name = C.c_char_p()
        _cuda.cuGetErrorName(rc, C.byref(name))
        raise RuntimeError(f"{what}: CUDA error {rc} ({name.value.decode() if name.value else '?'})")


class Module:
    def __init__(self, path):
        torch.zeros(1, device="cuda")  # primary context current on this thread
        ptx = open(path, "rb").read() + b"\0"
        n = 1 << 16
        self.info = C.create_string_buffer(n)
        err = C.create_string_buffer(n)
        opts = (C.c_int * 5)(CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                             CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE)
        vals = (C.c_void_p * 5)(C.cast(self.info, C.c_void_p), C.c_void_p(n), C.cast(err, C.c_void_p), C.c_void_p(n),
                                C.c_void_p(1))
        self.handle = C.c_void_p()
        rc = _cuda.cuModuleLoadDataEx(C.byref(self.handle), C.c_char_p(ptx), 5, opts, vals)
        if rc != 0:
            raise RuntimeError(f"JIT of {path} failed ({rc}):\n{err.value.decode(errors='replace')}")
        self.path = path

    def log(self):
        return self.info.value.decode(errors="replace")

    def global_bytes(self, name, size):
        """The first `size` bytes of the module's global (or constant) `name`."""
        ptr, nbytes = C.c_uint64(), C.c_size_t()
        check(_cuda.cuModuleGetGlobal_v2(C.byref(ptr), C.byref(nbytes), self.handle, name.encode()), f"cuModuleGetGlobal {name}")
        buf = C.create_string_buffer(size)
        check(_cuda.cuMemcpyDtoH_v2(buf, ptr, C.c_size_t(min(size, nbytes.value))), f"read {name}")
        return buf.raw

    def global_ptr(self, name):
        """Device address and size of the module's global `name`."""
        ptr, nbytes = C.c_uint64(), C.c_size_t()
        check(_cuda.cuModuleGetGlobal_v2(C.byref(ptr), C.byref(nbytes), self.handle, name.encode()), f"cuModuleGetGlobal {name}")
        return ptr.value, nbytes.value

    def zero_global(self, name):
        ptr, nbytes = self.global_ptr(name)
        check(_cuda.cuMemsetD8_v2(C.c_uint64(ptr), 0, C.c_size_t(nbytes)), f"zero {name}")

    def smem_bytes(self, entry):
        """The dynamic shared memory an entry declares in its descriptor (fmla_desc_<entry>, KernelDesc)."""
        words = struct.unpack("<12i", self.global_bytes("fmla_desc_" + entry, 48))
        return words[5]

    def kernel(self, name):
        f = C.c_void_p()
        check(_cuda.cuModuleGetFunction(C.byref(f), self.handle, name.encode()), f"cuModuleGetFunction {name}")
        return Kernel(f, name)


class Kernel:
    def __init__(self, handle, name):
        self.handle, self.name = handle, name

    def attr(self, a):
        v = C.c_int()
        check(_cuda.cuFuncGetAttribute(C.byref(v), a, self.handle), "cuFuncGetAttribute")
        return v.value

    def set_smem(self, nbytes):
        check(_cuda.cuFuncSetAttribute(self.handle, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, nbytes),
              f"max dynamic smem {nbytes} for {self.name}")

    def launch(self, grid, block, smem, params: bytes, stream=None):
        buf = C.create_string_buffer(params, len(params))
        args = (C.c_void_p * 1)(C.cast(buf, C.c_void_p))
        s = C.c_void_p(stream if stream is not None else torch.cuda.current_stream().cuda_stream)
        g = tuple(grid) + (1,) * (3 - len(grid))
        b = tuple(block) + (1,) * (3 - len(block))
        check(_cuda.cuLaunchKernel(self.handle, g[0], g[1], g[2], b[0], b[1], b[2], smem, s, args, None),
              f"launch {self.name}")


def tensor_map(dtype, ptr, dims, strides_bytes, box, swizzle=SWIZZLE_128B):
    """cuTensorMapEncodeTiled; dims/box innermost first, strides_bytes for dims 1.. (len(dims) - 1)."""
    raw = (C.c_ubyte * 192)()
    addr = (C.addressof(raw) + 63) & ~63
    rank = len(dims)
    gd = (C.c_uint64 * rank)(*dims)
    gs = (C.c_uint64 * max(rank - 1, 1))(*strides_bytes)
    bd = (C.c_uint32 * rank)(*box)
    es = (C.c_uint32 * rank)(*([1] * rank))
    check(_cuda.cuTensorMapEncodeTiled(C.c_void_p(addr), dtype, rank, C.c_void_p(ptr), gd, gs, bd, es, 0, swizzle, 2, 0),
          f"cuTensorMapEncodeTiled dims={dims} strides={strides_bytes} box={box}")
    return bytes((C.c_ubyte * 128).from_address(addr))


def to_device(data: bytes):
    """A device copy of `data` (for tensor maps kept in global memory)."""
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).cuda()
    return t


def pack(fmt, *values):
    return struct.pack("<" + fmt, *values)
