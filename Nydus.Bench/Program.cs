using Nydus.Bench;

// Benchmarks of the published nydusd (artifacts/nydusd, built by `dotnet cake --target=Bench`).
// Usage: Nydus.Bench [all|startup|passthrough|rafs|mounts|memory|registry|upgrade|blockdev|fscache|fleet|virtiofs] ; prints a table per suite and writes bench/results-<suite>.md.
// Nydus.Bench plots: only redraws bench/plots/ from bench/history/*.csv (no bench runs, no nydusd needed).
var suite = args.Length > 0 ? args[0] : "all";
var repoRoot = RepoPaths.FindRoot();
if (suite == "plots")
{
    foreach (var history in Directory.EnumerateFiles(Path.Combine(repoRoot, "bench", "history"), "*.csv"))
    {
        var plots = Nydus.Bench.Report.RatioPlots.Render(Path.Combine(repoRoot, "bench"), Path.GetFileNameWithoutExtension(history),
            Nydus.Bench.Report.BenchHistory.Read(history));
        foreach (var (_, file) in plots) Console.WriteLine($"bench/{file}");
    }
    return 0;
}
// NYDUS_BENCH_NYDUSD: another published nydusd (an A/B run against a base commit's build on a shared machine).
var nydusd = Environment.GetEnvironmentVariable("NYDUS_BENCH_NYDUSD") is { Length: > 0 } other ? other
    : Path.Combine(repoRoot, "artifacts", "nydusd", "nydusd");
if (!File.Exists(nydusd))
{
    Console.Error.WriteLine($"{nydusd} is missing: run `dotnet cake --target=Bench` (it publishes first)");
    return 2;
}

var suites = new Dictionary<string, Func<string, string, Task<BenchReport>>>
{
    ["startup"] = StartupBench.RunAsync,
    ["passthrough"] = PassthroughBench.RunAsync,
    ["rafs"] = RafsBench.RunAsync,
    ["mounts"] = MountsBench.RunAsync,
    ["memory"] = Nydus.Bench.Memory.MemoryBench.RunAsync,
    ["registry"] = Nydus.Bench.Registry.RegistryBench.RunAsync,
    ["upgrade"] = UpgradeBench.RunAsync,
    ["upgrade-quick"] = UpgradeBench.RunQuickAsync,
    ["blockdev"] = BlockDevBench.RunAsync,
    ["fscache"] = FscacheBench.RunAsync,
    ["fleet"] = Nydus.Bench.Fleet.FleetBench.RunAsync,
    ["virtiofs"] = VirtioFsBench.RunAsync,
};
foreach (var (name, run) in suites)
{
    if (suite != name && (suite != "all" || name.EndsWith("-quick", StringComparison.Ordinal))) continue;
    var report = await run(nydusd, repoRoot);
    report.Print();
    // A quick variant is for work in progress: its table is printed only.
    if (name.EndsWith("-quick", StringComparison.Ordinal)) continue;
    report.Write(Path.Combine(repoRoot, "bench", $"results-{name}.md"));
}
return 0;
