using System.Diagnostics;
using System.Text;
using Nydus.Actors.Interop;
using Xunit;

namespace Nydus.Actors.Tests.Support;

/// <summary>
/// A fact that runs in the test VM (scripts/vm: Debian's 6.1 kernel under qemu, the host's root read-only over 9p).
/// Skipped, with the reason, only where qemu cannot run at all (no qemu-system-x86_64, not root); a kernel that
/// cannot be fetched or a VM that does not boot fails the test.
/// </summary>
public sealed class VmFactAttribute : FactAttribute
{
    public VmFactAttribute()
    {
        if (TestVm.MissingPrerequisite() is { } reason) Skip = reason;
    }
}

/// <summary>
/// Boots the test VM through scripts/vm/run.sh with a guest script and waits for it, bounded: past the timeout
/// qemu (and the script around it) is killed, and it is killed as well when the wait fails for any other reason.
/// </summary>
public static class TestVm
{
    public static string ScriptsDirectory => Path.Combine(ImageFixtures.RepositoryRoot, "scripts", "vm");

    internal static string? MissingPrerequisite()
    {
        if (!OperatingSystem.IsLinux()) return "the test VM needs Linux";
        if (Libc.GetEffectiveUid() != 0) return "the test VM's set-up (apt-get download, /var/cache) needs root";
        string[] path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':');
        return path.Any(d => File.Exists(Path.Combine(d, "qemu-system-x86_64")))
            ? null
            : "qemu-system-x86_64 is not installed (Debian package qemu-system-x86; build.sh installs it)";
    }

    /// <summary>Runs <paramref name="guestScript"/> (a host path) in a fresh VM; <paramref name="exchangeDirectory"/> is
    /// shared read-write at the same path. <paramref name="environment"/> goes to run.sh (e.g. NYDUS_VM_VHOST_USER_FS).</summary>
    /// <returns>The guest script's exit code (125: the VM failed before it ran) and the serial console.</returns>
    /// <param name="killQemuAt">When a console line matches it, qemu is killed with SIGKILL there and then (a VM that
    /// dies mid-request); the run then ends without the guest script's exit code (125).</param>
    /// <param name="onConsoleLine">Called with each console line as it arrives (the host acting while the guest runs).</param>
    public static (int ExitCode, string Console) Run(string guestScript, string exchangeDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null, Func<string, bool>? killQemuAt = null, Action<string>? onConsoleLine = null)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        foreach (string a in new[] { Path.Combine(ScriptsDirectory, "run.sh"), guestScript, exchangeDirectory, ((int)timeout.TotalSeconds).ToString() })
        {
            info.ArgumentList.Add(a);
        }

        var console = new StringBuilder();
        using var process = new Process { StartInfo = info };
        int killed = 0;
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (console) console.AppendLine(e.Data);
            onConsoleLine?.Invoke(e.Data);
            if (killQemuAt is not null && killQemuAt(e.Data) && Interlocked.Exchange(ref killed, 1) == 0)
            {
                foreach (int qemu in DescendantsNamed(process.Id, "qemu-system-x86")) KillProcess(qemu);
            }
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (console) console.AppendLine(e.Data); };
        process.Start();
        process.StandardInput.Close();
        try
        {
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            // run.sh kills qemu itself at the timeout; this is the backstop (the first boot also downloads the kernel).
            if (!process.WaitForExit(timeout + TimeSpan.FromSeconds(120)))
            {
                throw new TimeoutException($"the test VM did not finish within {timeout}: {Tail(console)}");
            }

            process.WaitForExit();
            return (process.ExitCode, console.ToString());
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(10_000);
            }
        }
    }

    /// <summary>The processes below <paramref name="root"/> (this run's own tree only) whose name starts with <paramref name="name"/>.</summary>
    private static IEnumerable<int> DescendantsNamed(int root, string name)
    {
        var parents = new Dictionary<int, int>();
        var names = new Dictionary<int, string>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so parse after the last ')'.
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                int close = stat.LastIndexOf(')');
                names[pid] = stat[(stat.IndexOf('(') + 1)..close];
                parents[pid] = int.Parse(stat[(close + 2)..].Split(' ')[1]);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                // The process ended while we looked.
            }
        }

        foreach (var (pid, comm) in names)
        {
            if (!comm.StartsWith(name, StringComparison.Ordinal)) continue;
            for (int p = pid; parents.TryGetValue(p, out int parent) && parent > 1; p = parent)
            {
                if (parent == root)
                {
                    yield return pid;
                    break;
                }
            }
        }
    }

    private static void KillProcess(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.Kill();
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }
    }

    private static string Tail(StringBuilder console)
    {
        lock (console)
        {
            string text = console.ToString();
            return text.Length > 4000 ? text[^4000..] : text;
        }
    }
}
