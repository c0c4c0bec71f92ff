using System.Text.RegularExpressions;
using Nydus.Actors.Tests.Support;

namespace Nydus.Actors.Tests.Block;

/// <summary>
/// One boot of the test VM for all the kernel-side block tests (boots are slow under TCG): the corner-case tree as
/// a plain mkfs.erofs image, its <c>nydusd export --block --verity</c> file made here by the built nydusd, and
/// scripts/vm/guest-block.sh run in the guest, which serves the image with that same nydusd (ioctl mode on
/// /dev/nbd0, a Unix socket for nbd-client on /dev/nbd1) and mounts, manifests and verity-checks it. The VM boots on
/// first use (never when every test is skipped); its results, manifests and logs stay in the exchange directory.
/// </summary>
public sealed partial class GuestKernelFixture : IDisposable
{
    private static readonly TimeSpan VmTimeout = TimeSpan.FromMinutes(10);

    private readonly Lazy<GuestRun> _run;
    private TreeBuilder? _tree;

    public GuestKernelFixture()
    {
        _run = new Lazy<GuestRun>(Boot, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public GuestRun Run => _run.Value;

    private GuestRun Boot()
    {
        // No 5000-entry directory: every entry is hashed and listed by shell tools in the slow guest.
        _tree = new TreeBuilder().BuildRich(hugeDirectory: false);
        string work = _tree.WorkDir;
        string image = Path.Combine(work, "image.erofs");
        TreeBuilder.Run("mkfs.erofs", "--quiet", image, _tree.Root);

        string verityFile = Path.Combine(work, "verity.img");
        (int code, string text) = NydusdProcess.RunAsync(TimeSpan.FromMinutes(2), "export", "--block", "--bootstrap", image,
            "--localfs-dir", work, "--output", verityFile, "--verity").GetAwaiter().GetResult();
        if (code != 0) throw new InvalidOperationException("nydusd export --block --verity failed: " + text);
        string rootHash = RootHash().Match(text).Groups[1].Value;
        string hashOffset = HashOffset().Match(text).Groups[1].Value;

        string exchange = Directory.CreateDirectory(Path.Combine(work, "out")).FullName;
        string guestScript = Path.Combine(work, "guest.sh");
        string dotnetRoot = Environment.GetEnvironmentVariable("DOTNET_ROOT") is { Length: > 0 } root ? $"export DOTNET_ROOT='{root}'\n" : "";
        File.WriteAllText(guestScript,
            $"""
            export NYDUSD='{NydusdProcess.BinaryPath}' IMAGE='{image}' LOCALFS_DIR='{work}' OUT='{exchange}'
            export VERITY_FILE='{verityFile}' ROOT_HASH='{rootHash}' HASH_OFFSET='{hashOffset}'
            {dotnetRoot}exec bash '{Path.Combine(TestVm.ScriptsDirectory, "guest-block.sh")}'

            """);

        (int exit, string console) = TestVm.Run(guestScript, exchange, VmTimeout);
        string sourceManifest = TreeBuilder.Run("bash", Path.Combine(TestVm.ScriptsDirectory, "tree-manifest.sh"), _tree.Root);
        return new GuestRun(exit, console, exchange, sourceManifest, new FileInfo(image).Length);
    }

    public void Dispose() => _tree?.Dispose();

    [GeneratedRegex("dm-verity root hash: ([0-9a-f]{64})")]
    private static partial Regex RootHash();

    [GeneratedRegex(@"--hash-offset=(\d+)")]
    private static partial Regex HashOffset();
}

/// <summary>What the guest reported: the script's exit code, the console, and the files it wrote.</summary>
public sealed class GuestRun(int exitCode, string console, string exchange, string sourceManifest, long imageBytes)
{
    public int ExitCode { get; } = exitCode;

    public string Console { get; } = console;

    /// <summary>The manifest (scripts/vm/tree-manifest.sh) of the source tree, taken on the host.</summary>
    public string SourceManifest { get; } = sourceManifest;

    public long ImageBytes { get; } = imageBytes;

    /// <summary>Where the guest wrote its results, manifests and logs.</summary>
    public string ExchangeDirectory { get; } = exchange;

    /// <summary>The value the guest recorded for a step ("name value" lines of OUT/results), or null if it never ran.</summary>
    public string? Result(string step) =>
        File.Exists(Path.Combine(ExchangeDirectory, "results"))
            ? File.ReadLines(Path.Combine(ExchangeDirectory, "results")).Select(l => l.Split(' ', 2)).FirstOrDefault(p => p[0] == step)?[1]
            : null;

    public string? Manifest(string name) => File.Exists(Path.Combine(ExchangeDirectory, name + ".manifest"))
        ? File.ReadAllText(Path.Combine(ExchangeDirectory, name + ".manifest"))
        : null;

    /// <summary>The guest's logs and the console's end, for failure messages.</summary>
    public string Diagnostics()
    {
        var logs = Directory.Exists(ExchangeDirectory)
            ? Directory.GetFiles(ExchangeDirectory, "*.log").Append(Path.Combine(ExchangeDirectory, "results")).Where(File.Exists)
                .Select(f => $"--- {Path.GetFileName(f)}\n{File.ReadAllText(f)}")
            : [];
        string tail = Console.Length > 3000 ? Console[^3000..] : Console;
        return string.Join("\n", logs) + "\n--- console (end)\n" + tail;
    }
}
