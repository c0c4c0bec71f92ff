namespace Nydus.Bench.Report;

/// <summary>
/// Medians over the rounds of an interleaved bench. Values are kept per round (NaN where a round failed), so that a
/// ratio is taken between two contenders of the same round, never between two different minutes of a shared machine.
/// </summary>
public static class RoundStats
{
    /// <summary>The median of the rounds that produced a value; NaN when none did.</summary>
    public static double Median(IEnumerable<double> values)
    {
        double[] valid = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        if (valid.Length == 0) return double.NaN;
        return valid.Length % 2 == 1 ? valid[valid.Length / 2] : (valid[valid.Length / 2 - 1] + valid[valid.Length / 2]) / 2;
    }

    /// <summary>The median over rounds of value ÷ baseline of the same round.</summary>
    public static double MedianRatio(double[] values, double[] baseline) =>
        Median(values.Zip(baseline, (v, b) => double.IsNaN(v) || double.IsNaN(b) || b == 0 ? double.NaN : v / b));
}
