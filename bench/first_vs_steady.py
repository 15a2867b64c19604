"""First inference against steady state of one zoo model on the CPU, one thread:
    python3 bench/first_vs_steady.py MODEL NHWC|NCHW
prints the Runner set-up time, the first run and the median of 10 runs after it
(thread CPU time, ms)."""
import sys, time, statistics, numpy as np, paskdnn
from paskdnn import graph as G, models
m, layout = sys.argv[1], sys.argv[2]
ctx = paskdnn.Context("cpu", num_threads=1, policy="pask")
g = models.build(m, seed=0, layout=layout)
t0 = time.perf_counter(); r = G.Runner(g, ctx); setup = (time.perf_counter()-t0)*1e3
x = np.random.default_rng(0).standard_normal((1,3,224,224)).astype(np.float32)
if layout == "NHWC": x = np.ascontiguousarray(x.transpose(0,2,3,1))
xin = r.input(x)
def one():
    t = time.thread_time(); r.run(xin, record=False); return (time.thread_time()-t)*1e3
first = one(); steady = statistics.median(one() for _ in range(10))
print(f"{m} {layout}: setup {setup:.1f} ms, first {first:.1f}, steady {steady:.1f}, first/steady {first/steady:.2f}")
