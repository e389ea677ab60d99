"""What the tests (tests/) and the benchmarks, fault campaign and abuse checks (bench/) share, so
that neither imports the other: free ports, a pipeline of its own on a shared broker, the secured
cluster's script and generated tracking logs. Not part of the product: the wheel leaves it out."""
