using System.Globalization;
using System.Text.RegularExpressions;
using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace Nydus.Bench.Report;

/// <summary>
/// Draws a suite's ratio history as one SVG per measure, <c>bench/plots/&lt;suite&gt;-&lt;measure&gt;.svg</c>: a line
/// per "series / baseline" pair over the runs (one column per run, labelled with date and commit), the issue's aim and parity (1×) as horizontal lines. Points of
/// runs that were not interleaved medians are ringed, so the older single passes are told apart at a glance.
/// OxyPlot's SvgExporter is managed code: no native graphics library is needed on the machine.
/// </summary>
public static partial class RatioPlots
{
    private const int Width = 900;
    private const int Height = 540;
    public const string Interleaved = "interleaved";

    private static readonly OxyColor[] Palette =
    [
        OxyColor.FromRgb(0x1f, 0x77, 0xb4), OxyColor.FromRgb(0xd6, 0x27, 0x28), OxyColor.FromRgb(0x2c, 0xa0, 0x2c),
        OxyColor.FromRgb(0x94, 0x67, 0xbd), OxyColor.FromRgb(0xff, 0x7f, 0x0e), OxyColor.FromRgb(0x8c, 0x56, 0x4b),
    ];

    /// <summary>Renders every measure of <paramref name="points"/>; returns (measure, path relative to bench/) per plot.</summary>
    public static List<(string Measure, string RelativePath)> Render(string benchDir, string suite, IReadOnlyList<RatioPoint> points)
    {
        string plotDir = Path.Combine(benchDir, "plots");
        Directory.CreateDirectory(plotDir);
        var written = new List<(string, string)>();
        foreach (var byMeasure in points.GroupBy(p => p.Measure))
        {
            string file = $"{suite}-{Slug(byMeasure.Key)}.svg";
            PlotModel model = Model(suite, byMeasure.Key, byMeasure.OrderBy(p => p.Date).ToList());
            File.WriteAllText(Path.Combine(plotDir, file), Unclipped(new SvgExporter { Width = Width, Height = Height }.ExportToString(model)));

            written.Add((byMeasure.Key, "plots/" + file));
        }

        return written;
    }

    private static PlotModel Model(string suite, string measure, List<RatioPoint> points)
    {
        bool lower = points[^1].LowerIsBetter;
        var model = new PlotModel
        {
            Title = $"{suite}: {measure}",
            Subtitle = lower ? "time ÷ the baseline's in the same run, lower is better; one column per run (UTC date, commit)"
                : "throughput ÷ the baseline's in the same run, higher is better; one column per run (UTC date, commit)",
            Background = OxyColors.White,
            // The SVG exporter measures text with Helvetica metrics; naming a Helvetica-like face keeps labels inside their boxes.
            DefaultFont = "Arial",
            TitleFontSize = 15,
            SubtitleFontSize = 11,
            Padding = new OxyThickness(8, 22, 8, 8),
        };
        // One column per run, oldest left, labelled with its date and commit: runs come in bursts, a time axis would
        // squeeze a day's runs into one point.
        var runs = points.Select(p => (p.Date, p.Commit)).Distinct().OrderBy(r => r.Date).ToList();
        model.Legends.Add(new Legend
        {
            // Below the plot, one entry per line, so a name drawn wider than measured (see Unclipped) has room.
            LegendPosition = LegendPosition.BottomLeft, LegendPlacement = LegendPlacement.Outside, LegendOrientation = LegendOrientation.Vertical,
            LegendFontSize = 11, LegendLineSpacing = 4,
        });
        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Bottom, Minimum = -0.5, Maximum = runs.Count - 0.5,
            MajorStep = 1, MinorStep = 1, Angle = -35, FontSize = 9, MajorGridlineStyle = LineStyle.Dot,
            LabelFormatter = x =>
            {
                int i = (int)Math.Round(x);
                return i >= 0 && i < runs.Count && Math.Abs(x - i) < 1e-6 ? $"{runs[i].Date.UtcDateTime:MM-dd HH:mm} {runs[i].Commit}" : "";
            },
        });
        double top = points.Select(p => p.Ratio).Concat(points.Select(p => p.Aim)).Where(v => !double.IsNaN(v)).DefaultIfEmpty(1).Max();
        model.Axes.Add(new LinearAxis
        {
            Position = AxisPosition.Left, Title = "ratio (×)", Minimum = 0, Maximum = Math.Max(1.2, top * 1.15),
            MajorGridlineStyle = LineStyle.Dot,
        });

        model.Annotations.Add(new LineAnnotation
        {
            Type = LineAnnotationType.Horizontal, Y = 1, Color = OxyColors.Gray, LineStyle = LineStyle.Dash, Text = "1× (parity)",
            TextLinePosition = 0, TextHorizontalAlignment = HorizontalAlignment.Left,
        });
        foreach (var aim in points.Where(p => !double.IsNaN(p.Aim)).GroupBy(p => p.Aim))
        {
            string who = string.Join(", ", aim.Select(p => $"{p.Series} / {p.Baseline}").Distinct());
            model.Annotations.Add(new LineAnnotation
            {
                Type = LineAnnotationType.Horizontal, Y = aim.Key, Color = OxyColors.DarkGreen, LineStyle = LineStyle.LongDash, StrokeThickness = 1.5,
                Text = $"aim {(lower ? "≤" : "≥")} {aim.Key.ToString("0.##", CultureInfo.InvariantCulture)}× ({who})",
                TextHorizontalAlignment = HorizontalAlignment.Right,
            });
        }

        var singlePass = new ScatterSeries
        {
            Title = "older method (csv: method)", MarkerType = MarkerType.Circle, MarkerSize = 7,
            MarkerFill = OxyColors.Transparent, MarkerStroke = OxyColors.Black, MarkerStrokeThickness = 1,
        };
        int colour = 0;
        foreach (var line in points.GroupBy(p => $"{p.Series} / {p.Baseline}"))
        {
            var series = new LineSeries
            {
                Title = line.Key, Color = Palette[colour++ % Palette.Length], MarkerType = MarkerType.Circle, MarkerSize = 3.5,
                StrokeThickness = 2,
            };
            foreach (RatioPoint p in line)
            {
                var at = new DataPoint(runs.IndexOf((p.Date, p.Commit)), p.Ratio);
                series.Points.Add(at);
                if (p.Method != Interleaved) singlePass.Points.Add(new ScatterPoint(at.X, at.Y));
            }

            model.Series.Add(series);
        }

        if (singlePass.Points.Count > 0) model.Series.Add(singlePass);
        return model;
    }

    /// <summary>
    /// The SVG without its clip paths. The exporter measures text with Helvetica's widths and clips the legend to
    /// them; a viewer without Arial or Helvetica draws wider letters (DejaVu Sans), which cut the end off the names.
    /// Nothing else needs clipping: the axes span every point and the annotations end at the plot area.
    /// </summary>
    private static string Unclipped(string svg) => ClipPathAttribute().Replace(svg, "");

    [GeneratedRegex(@" clip-path=""url\(#clipPath\d+\)""")]
    private static partial Regex ClipPathAttribute();

    /// <summary>"cold tar (s)" -> "cold-tar-s": file-name friendly.</summary>
    public static string Slug(string measure)
    {
        var chars = measure.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray();
        return string.Join('-', new string(chars).Split('-', StringSplitOptions.RemoveEmptyEntries));
    }
}
