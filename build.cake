// Build script, run through the cake.tool local tool: `dotnet cake build.cake --target=Test`
// (build.sh wraps it and installs the Debian packages the tests need first).
using System.Xml.Linq;

var target = Argument("target", "Build");
var configuration = Argument("configuration", "Release");
var filter = Argument("filter", "");
// The whole test run's wall-clock budget. Every test bounds its own waits; this is the last backstop so that a run
// always ends (CI stops a job after 90 minutes): when it is spent, test FUSE mounts are aborted, then the run is killed.
var testBudget = TimeSpan.FromMinutes(Argument("test-budget-minutes", 40.0));

var solution = File("./Nydus.sln");
var resultsDir = Directory("./artifacts/test-results");

Task("Build").Does(() =>
{
    DotNetBuild(solution, new DotNetBuildSettings { Configuration = configuration });
});

Task("Test").IsDependentOn("Build").Does(() =>
{
    CleanDirectory(resultsDir);
    // Everything the tests start inherits this marker, so the sweep below finds it even if it outlived its parent
    // (a daemon that keeps CI's output pipe open would keep CI waiting long after the tests are done).
    var runId = Guid.NewGuid().ToString("N");
    // The run's own temp dir (short: tests put Unix sockets there, whose paths are limited to 108 bytes): the sweep
    // takes back mounts under it only, never those of another run on the same machine.
    var runTemp = $"/tmp/nr-{runId.Substring(0, 8)}";
    System.IO.Directory.CreateDirectory(runTemp);
    var settings = new DotNetTestSettings
    {
        Configuration = configuration,
        NoBuild = true,
        ResultsDirectory = resultsDir,
        Loggers = new[] { "trx;LogFileName=results.trx", "console;verbosity=normal" },
        EnvironmentVariables = new Dictionary<string, string> { ["NYDUS_TEST_RUN"] = runId, ["TMPDIR"] = runTemp },
        // Per-test backstop; no dump: a process blocked on a FUSE request cannot be dumped and would hang the collector.
        ArgumentCustomization = args => args.Append("--blame-hang-timeout 10m --blame-hang-dump-type none"),
    };
    if (!string.IsNullOrEmpty(filter)) settings.Filter = filter;
    void Sweep(string mode) =>
        StartProcess("bash", new ProcessSettings { Arguments = $"scripts/test-sweep.sh {runId} {runTemp} {mode}" });
    using var watchdog = new System.Threading.Timer(_ =>
    {
        Console.WriteLine($"Test run exceeded its budget of {testBudget.TotalMinutes} minutes: aborting test mounts, then stopping it");
        Sweep("--mounts-only");
        System.Threading.Thread.Sleep(TimeSpan.FromSeconds(90));
        Sweep("");
    }, null, testBudget, System.Threading.Timeout.InfiniteTimeSpan);
    Exception failure = null;
    try { DotNetTest("./Nydus.Actors.Tests/Nydus.Actors.Tests.csproj", settings); }
    catch (Exception e) { failure = e; }
    watchdog.Change(System.Threading.Timeout.Infinite, System.Threading.Timeout.Infinite);
    Sweep("");

    // A plain closing line that CI reads: "N passed, N failed, N skipped".
    int passed = 0, failed = 0, skipped = 0;
    foreach (var trx in GetFiles(resultsDir.Path.FullPath + "/**/*.trx"))
    {
        var ns = XNamespace.Get("http://microsoft.com/schemas/VisualStudio/TeamTest/2010");
        foreach (var r in XDocument.Load(trx.FullPath).Descendants(ns + "UnitTestResult"))
        {
            switch ((string)r.Attribute("outcome"))
            {
                case "Passed": passed++; break;
                case "Failed": failed++; break;
                default: skipped++; break;
            }
        }
    }
    // Plain text (Cake colours its own log lines): CI reads this line.
    Console.WriteLine($"Tests: {passed} passed, {failed} failed, {skipped} skipped");
    if (failure != null) throw failure;
    if (passed == 0) throw new Exception("no test ran");
});

Task("Publish").Does(() =>
{
    DotNetPublish("./Nydus.Host/Nydus.Host.csproj", new DotNetPublishSettings
    {
        Configuration = "Release",
        OutputDirectory = "./artifacts/nydusd",
        Runtime = "linux-x64",
        SelfContained = false,
        ArgumentCustomization = args => args.Append("-p:PublishReadyToRun=true"),
    });
});

Task("Run").IsDependentOn("Publish").Does(() =>
{
    var exit = StartProcess("bash", new ProcessSettings { Arguments = "scripts/run-sample.sh" });
    if (exit != 0) throw new Exception($"sample exited with {exit}");
});

Task("Bench").IsDependentOn("Publish").Does(() =>
{
    var exit = StartProcess("dotnet", new ProcessSettings
    {
        Arguments = "run --project ./Nydus.Bench/Nydus.Bench.csproj -c Release -- " + Argument("suite", "all"),
    });
    if (exit != 0) throw new Exception($"benchmark exited with {exit}");
});

// Cold reads from a real docker-registry on loopback (Nydus.Bench/Registry): writes bench/results-registry.md.
Task("BenchRegistry").IsDependentOn("Publish").Does(() =>
{
    var exit = StartProcess("dotnet", new ProcessSettings
    {
        Arguments = "run --project ./Nydus.Bench/Nydus.Bench.csproj -c Release -- registry",
    });
    if (exit != 0) throw new Exception($"registry benchmark exited with {exit}");
});

RunTarget(target);
