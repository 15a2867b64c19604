"""Host cost of the CUDA driver calls on paskdnn's per-call path (device
machine): context push/pop, cuCtxGetCurrent, cuPointerGetAttribute with and
without a current context, event record. Through cuda.bindings (ctypes-level
overhead included, about the same for every row; the differences are what
matter).

    python3 bench/driver_costs.py
"""
import time

from cuda.bindings import driver as cu


def per_call_us(fn, n=20000):
    for _ in range(1000):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    cu.cuInit(0)
    _, dev = cu.cuDeviceGet(0)
    _, ctx = cu.cuDevicePrimaryCtxRetain(dev)
    cu.cuCtxPushCurrent(ctx)
    _, ptr = cu.cuMemAlloc(1 << 20)
    attr = cu.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE
    rows = [("python loop baseline (a no-op lambda)", lambda: None),
            ("cuCtxGetCurrent", lambda: cu.cuCtxGetCurrent()),
            ("cuCtxPushCurrent + cuCtxPopCurrent", lambda: (cu.cuCtxPushCurrent(ctx), cu.cuCtxPopCurrent())),
            ("cuPointerGetAttribute (context current)", lambda: cu.cuPointerGetAttribute(attr, ptr))]
    for name, fn in rows:
        print(f"{name:48s} {per_call_us(fn):7.3f} us")
    cu.cuCtxPopCurrent()
    r = cu.cuPointerGetAttribute(attr, ptr)
    print(f"{'cuPointerGetAttribute (no context current)':48s} {per_call_us(lambda: cu.cuPointerGetAttribute(attr, ptr)):7.3f} us"
          f"  status {r[0]}")


if __name__ == "__main__":
    main()
