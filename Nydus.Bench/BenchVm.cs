using System.Diagnostics;
using System.Text;

namespace Nydus.Bench;

/// <summary>Boots the test VM (scripts/vm/run.sh) with a guest script, bounded; the guest writes its results to the exchange dir.</summary>
internal static class BenchVm
{
    /// <summary>Runs <paramref name="guestScript"/> in the VM; throws with the console's end when it fails or exits non-zero.</summary>
    /// <param name="environment">For run.sh (NYDUS_VM_VHOST_USER_FS, NYDUS_VM_NBD, NYDUS_VM_9P_EXPORT...).</param>
    public static void Run(string repoRoot, string guestScript, string exchange, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        foreach (string a in new[] { Path.Combine(repoRoot, "scripts", "vm", "run.sh"), guestScript, exchange, ((int)timeout.TotalSeconds).ToString() })
        {
            info.ArgumentList.Add(a);
        }

        using Process vm = Process.Start(info)!;
        vm.StandardInput.Close();
        var console = new StringBuilder();
        vm.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (console) console.AppendLine(e.Data); };
        vm.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (console) console.AppendLine(e.Data); };
        vm.BeginOutputReadLine();
        vm.BeginErrorReadLine();
        try
        {
            // run.sh kills qemu at the timeout itself; this is the backstop.
            if (!vm.WaitForExit(timeout + TimeSpan.FromMinutes(2))) throw new TimeoutException($"the bench VM did not finish in {timeout}");
            vm.WaitForExit();
        }
        finally
        {
            if (!vm.HasExited) vm.Kill(entireProcessTree: true);
        }

        if (vm.ExitCode != 0)
        {
            string text;
            lock (console) text = console.ToString();
            throw new InvalidOperationException($"the bench VM failed (exit {vm.ExitCode}):\n{(text.Length > 4000 ? text[^4000..] : text)}");
        }
    }
}
