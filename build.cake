// Build script, run through the cake.tool local tool: `dotnet cake build.cake --target=Test`
// (build.sh wraps it and installs the Debian packages the tests need first).
using System.Xml.Linq;

var target = Argument("target", "Build");
var configuration = Argument("configuration", "Release");
var filter = Argument("filter", "");

var solution = File("./Nydus.sln");
var resultsDir = Directory("./artifacts/test-results");

Task("Build").Does(() =>
{
    DotNetBuild(solution, new DotNetBuildSettings { Configuration = configuration });
});

Task("Test").IsDependentOn("Build").Does(() =>
{
    CleanDirectory(resultsDir);
    var settings = new DotNetTestSettings
    {
        Configuration = configuration,
        NoBuild = true,
        ResultsDirectory = resultsDir,
        Loggers = new[] { "trx;LogFileName=results.trx", "console;verbosity=normal" },
        // Every test bounds its own waits; this is the backstop against a hang.
        ArgumentCustomization = args => args.Append("--blame-hang-timeout 10m"),
    };
    if (!string.IsNullOrEmpty(filter)) settings.Filter = filter;
    Exception failure = null;
    try { DotNetTest("./Nydus.Actors.Tests/Nydus.Actors.Tests.csproj", settings); }
    catch (Exception e) { failure = e; }

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

RunTarget(target);
