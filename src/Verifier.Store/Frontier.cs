namespace Verifier.Store;

public sealed record FrontierPoint(long RunId, string Strategy, string Parameters, long Flops, double B0, double? TrueLoss, bool Pareto,
    double? Baseline, string TranscriptPath);

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
        return accepted.Select(p => new FrontierPoint(p.Id, p.Strategy, p.Parameters, p.Flops, p.B0, p.TrueLoss,
                !accepted.Any(q => q.Flops <= p.Flops && q.B0 <= p.B0 && (q.Flops < p.Flops || q.B0 < p.B0)), Baseline(p.Flops), p.TranscriptPath))
            .OrderBy(p => p.Flops).ToList();
    }
}
