"""GPU environment probe: what this machine's stack is and what it allows, as one JSON file.

Step 1 of ``make gpu-quick`` (bench/gpu_quick.py). Every section is independent: one that fails
records its error and the next one runs; the JSON is rewritten after every section, so a run cut
off by a time limit still leaves what it learnt.

Sections:
  versions       python, torch (+CUDA), CuPy (+runtime/driver/NVRTC), numpy, numba, numba-cuda,
                 the device; which libcudart / libnvrtc the process loaded (from /proc/self/maps)
  smoke          one zero-copy gather per dtype family, checked against the CPU
  kernels        every registered kernel instance: registers per thread, local memory, resident
                 blocks per SM (occupancy API, block of 256) and the resident-thread count
  register       cudaHostRegister on anonymous memory, read-only memory (with the read-only flag
                 where cudaDevAttrHostRegisterReadOnlySupported says so), file-backed memmaps in
                 /tmp, $HOME and /dev/shm (r+ and r)
  syncs          host syncs per loader batch (torch.cuda.set_sync_debug_mode) and per feats[idx]

    PYTHONPATH=. python bench/gpu_probe.py --out /tmp/probe.json
Without a GPU it records "no CUDA device" and exits 0 (the CI dry run).
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def _loaded_libs(*names: str) -> dict:
    out = {n: [] for n in names}
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                for n in names:
                    if n in os.path.basename(path) and path not in out[n]:
                        out[n].append(path)
    except OSError as exc:
        return {"error": repr(exc)}
    return out


def sec_versions(torch) -> dict:
    d = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
         "torch": torch.__version__, "torch_cuda": torch.version.cuda,
         "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        d["device"] = {"name": p.name, "sms": p.multi_processor_count,
                       "cc": f"{p.major}.{p.minor}", "mem_gib": round(p.total_memory / 2**30, 1),
                       "max_threads_per_sm": getattr(p, "max_threads_per_multi_processor", None)}
    for mod in ("numpy", "numba", "numba_cuda", "cupy", "torch_geometric"):
        try:
            m = __import__(mod)
            d[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            d[mod] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    try:
        import cupy

        d["cupy_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        d["cupy_driver"] = cupy.cuda.runtime.driverGetVersion()
        d["cupy_config_cuda_path"] = getattr(cupy.cuda, "get_cuda_path", lambda: None)()
        try:
            from cupy.cuda import nvrtc

            d["nvrtc_version"] = nvrtc.getVersion()
        except Exception as exc:  # noqa: BLE001
            d["nvrtc_version"] = f"error: {type(exc).__name__}: {exc}"[:300]
    except Exception as exc:  # noqa: BLE001
        d["cupy_error"] = f"{type(exc).__name__}: {exc}"[:300]
    import unified_tensor as ut

    d["ut_cuda_available"] = ut.cuda_available()
    return d


def sec_smoke(torch) -> dict:
    import unified_tensor as ut

    out = {}
    for dt in (torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.int64, torch.bool):
        for shape in ((1000, 13), (777, 3, 5), (500, 257)):
            t = (torch.randn(shape) * 50).to(dt) if dt != torch.bool else torch.rand(shape) > 0.5
            ref_t = t.clone()
            u = ut.unified(t)
            for idt in (torch.int32, torch.int64):
                idx = torch.randint(-shape[0], shape[0], (333,), dtype=idt)
                got = u[idx.cuda()]
                ok = got.device.type == "cuda" and torch.equal(got.cpu(), ref_t[idx.long()])
                out[f"{dt}{shape}/{idt}"] = "ok" if ok else "MISMATCH"
            ut.unpin(u)
    torch.cuda.synchronize()
    out["all_ok"] = all(v == "ok" for v in out.values())
    return out


def sec_kernels(torch) -> dict:
    import cupy
    from cupy_backends.cuda.api import driver

    from unified_tensor import _gather_cuda, _kernels  # noqa: F401  (registers the gather)
    import samplers.sampling._layer_cuda  # noqa: F401  (registers the sampler kernels)

    dev = torch.cuda.current_device()
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    out = {}
    for source, names in _kernels.registered().items():
        t0 = time.perf_counter()
        for n in names:
            try:
                fn = _kernels.get_function(source, n, dev)
                ptr = getattr(fn, "ptr", None) or fn.kernel.ptr   # Function or RawKernel
                blocks = driver.occupancyMaxActiveBlocksPerMultiprocessor(ptr, 256, 0)
                out[n] = {"regs": fn.num_regs, "local_bytes": fn.local_size_bytes,
                          "max_block": fn.max_threads_per_block, "blocks_per_sm@256": blocks,
                          "resident_threads": blocks * 256 * sms}
            except Exception as exc:  # noqa: BLE001
                out[n] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        out[f"_compile_s[{source}]"] = round(time.perf_counter() - t0, 2)
    del cupy
    return out


def _try(fn) -> str:
    try:
        fn()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"[:300]


def sec_register(torch) -> dict:
    import numpy as np

    from unified_tensor import _cudart

    rt = _cudart.runtime()
    base_flags = _cudart.REGISTER_PORTABLE | _cudart.REGISTER_MAPPED
    ro_flags = base_flags | _cudart.REGISTER_READ_ONLY
    out = {"read_only_supported": rt.read_only_supported(), "kernel": platform.release()}
    for f in ("enabled", "defrag"):
        try:
            with open(f"/sys/kernel/mm/transparent_hugepage/{f}") as fh:
                out[f"thp_{f}"] = fh.read().strip()
        except OSError as exc:
            out[f"thp_{f}"] = f"unreadable: {exc}"

    def reg(ptr: int, size: int, flags: int) -> str:
        def f():
            rt.host_register(ptr, size, flags)
            try:
                rt.device_pointer(ptr)
            finally:
                rt.host_unregister(ptr)
        return _try(f)

    size = 64 << 20
    anon = mmap.mmap(-1, size)
    a = np.frombuffer(anon, dtype=np.uint8)
    a[::4096] = 1
    out["anonymous"] = reg(a.ctypes.data, size, base_flags)
    out["anonymous+readonly_flag"] = reg(a.ctypes.data, size, ro_flags)
    ro = mmap.mmap(-1, size, prot=mmap.PROT_READ)
    r = np.frombuffer(ro, dtype=np.uint8)
    out["prot_read"] = reg(r.ctypes.data, size, base_flags)
    out["prot_read+readonly_flag"] = reg(r.ctypes.data, size, ro_flags)
    t = torch.empty(size, dtype=torch.uint8)
    out["torch_cpu_tensor"] = reg(t.data_ptr(), size, base_flags)
    del r, a
    for where in ("/tmp", os.path.expanduser("~"), "/dev/shm"):
        try:
            fd, path = tempfile.mkstemp(dir=where, suffix=".npy")
            os.close(fd)
        except OSError as exc:
            out[f"memmap[{where}]"] = f"cannot create a file: {exc}"
            continue
        try:
            np.save(path, np.arange(size // 4, dtype=np.float32))
            for mode in ("r+", "r"):
                m = np.load(path, mmap_mode=mode)
                # the .npy header puts the data at a non-page offset: register whole pages
                p0 = m.ctypes.data - m.ctypes.data % mmap.PAGESIZE
                n = m.nbytes + (m.ctypes.data - p0)
                n -= n % mmap.PAGESIZE
                out[f"memmap[{where}]/{mode}"] = reg(p0, n, base_flags)
                out[f"memmap[{where}]/{mode}+readonly_flag"] = reg(p0, n, ro_flags)
                del m
        finally:
            os.unlink(path)
    return out


def sec_syncs(torch) -> dict:
    import unified_tensor as ut
    from samplers import CSCGraph, DataLoader, NeighborSampler

    g = torch.Generator().manual_seed(0)
    n, e = 20000, 200000
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    feats = ut.unified(torch.randn(n, 64))
    labels = torch.randint(0, 10, (n,))
    graph = CSCGraph.from_edge_index(torch.stack([src, dst]), n).pin()
    out = {}

    def count(fn) -> int:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum(1 for x in w if "synchroniz" in str(x.message).lower())

    idx = torch.randint(0, n, (4096,), device="cuda")
    feats[idx]
    out["feats[idx]"] = count(lambda: feats[idx])   # deferred range check: 0 expected
    out["ut.gather(validate='sync')"] = count(lambda: ut.gather(feats, idx, validate="sync"))
    out["ut.gather(validate=False)"] = count(lambda: ut.gather(feats, idx, validate=False))
    on_gpu = feats._ut_plain.cuda()
    on_gpu[idx]
    ut.gather(on_gpu, idx)
    out["ut.gather(gpu table)"] = count(lambda: ut.gather(on_gpu, idx))
    ut.synchronize()
    nb = 5
    for one_sync, prefetch in ((False, 0), (False, None), (True, 0)):
        loader = DataLoader(graph, torch.arange(n // 2), NeighborSampler([10, 5], one_sync=one_sync),
                            batch_size=512, device="cuda", features=feats, labels=labels,
                            prefetch=prefetch, seed=0)
        it = iter(loader)
        next(it)

        def run(it=it):
            for _ in range(nb):
                next(it)
        c = count(run)
        key = "loader_per_batch(prefetch=0, producer in this thread)" if prefetch == 0 else \
            "loader_per_batch(prefetch thread; counts both threads)"
        if one_sync:
            key = key.replace("loader_per_batch", "loader_per_batch(one_sync)")
        out[key] = round(c / nb, 2)
        del it, loader
    torch.cuda.synchronize()
    return out


SECTIONS = [("versions", sec_versions), ("smoke", sec_smoke), ("kernels", sec_kernels),
            ("register", sec_register), ("syncs", sec_syncs)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="JSON path (default: print only)")
    p.add_argument("--sections", default=",".join(s for s, _ in SECTIONS),
                   help="comma-separated subset of the sections")
    args = p.parse_args(argv)
    import torch

    res: dict = {"probe": "gpu", "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def save():
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out + ".tmp", "w") as f:
                json.dump(res, f, indent=1, default=str)
            os.replace(args.out + ".tmp", args.out)

    want = args.sections.split(",")
    failed = 0
    for name, fn in SECTIONS:
        if name not in want:
            continue
        if name != "versions" and not torch.cuda.is_available():
            res[name] = "skipped: no CUDA device"
            print(f"[probe] {name}: skipped: no CUDA device", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            res[name] = fn(torch)
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - recorded, the next section runs
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000],
                         "traceback": traceback.format_exc()[-3000:]}
            status = "ERROR " + res[name]["error"][:200]
            failed += 1
        res.setdefault("_seconds", {})[name] = round(time.perf_counter() - t0, 2)
        print(f"[probe] {name} ({res['_seconds'][name]} s): {status}", flush=True)
        if name != "versions" or status != "ok":
            print("  " + json.dumps(res[name], default=str)[:1500], flush=True)
        save()
    if torch.cuda.is_available():
        res["loaded_libs"] = _loaded_libs("libcudart", "libnvrtc", "libcuda.so")
        print("[probe] loaded libs: " + json.dumps(res["loaded_libs"]), flush=True)
    save()
    print(json.dumps(res.get("versions", {}), default=str), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
