namespace Verifier.Store;

public sealed record FrontierPoint(long RunId, string Strategy, string Parameters, long Flops, double B0, double? TrueLoss, bool Pareto,
    double? Baseline, string TranscriptPath, double? AccuracyLb = null);

/// <summary>The faithfulness-vs-compute frontier over accepted runs (spec/store.md).</summary>
public static class Frontier
{
    /// <summary>Accepted runs only (latest check of the transcript is 'accepted'), one point per transcript. A point is
    /// Pareto-optimal when no other point has FLOPs ≤ and b₀ ≤ with one strictly smaller. The linear baseline joins the
    /// brute-force and trivial points in (log₁₀ FLOPs, b₀); each point carries the baseline's b₀ at its cost.</summary>
    public static IReadOnlyList<FrontierPoint> Compute(IEnumerable<RunRecord> runs)
    {
        var accepted = runs.Where(r => r.Verdict == "accepted").GroupBy(r => r.TranscriptSha256).Select(g => g.Last()).ToList();
        var bf = accepted.Where(r => r.Strategy == "brute-force").OrderBy(r => r.B0).FirstOrDefault();
        var tr = accepted.Where(r => r.Strategy == "trivial").OrderBy(r => r.B0).FirstOrDefault();
        double? Baseline(long flops)
        {
            if (bf is null || tr is null || bf.Flops == tr.Flops || flops <= 0) return null;
            double x0 = Math.Log10(tr.Flops), x1 = Math.Log10(bf.Flops), x = Math.Log10(flops);
            return tr.B0 + (bf.B0 - tr.B0) * (x - x0) / (x1 - x0);
        }
        var costs = accepted.Select(q => (q.Flops, q.B0)).ToList();
        return accepted.Select(p => new FrontierPoint(p.Id, p.Strategy, p.Parameters, p.Flops, p.B0, p.TrueLoss,
                !Dominated(p.Flops, p.B0, costs), Baseline(p.Flops), p.TranscriptPath, p.AccuracyLb))
            .OrderBy(p => p.Flops).ToList();
    }

    /// <summary>True when some point has FLOPs ≤ and b₀ ≤ with one of them strictly smaller.</summary>
    public static bool Dominated(long flops, double b0, IEnumerable<(long Flops, double B0)> points) =>
        points.Any(q => q.Flops <= flops && q.B0 <= b0 && (q.Flops < flops || q.B0 < b0));
}
