using TorchSharp;
using Verifier.Core;
using Verifier.Model;
using static TorchSharp.torch;

namespace Verifier.Crosscoders;

public sealed record SiteMetrics(string Site, double Fvu, double Cosine, double SplicedLoss, double ZeroAblationLoss, double LossRecovered);

public sealed record CrosscoderEvaluation(
    IReadOnlyList<SiteMetrics> Sites, double CleanLoss, double MeanFvu, double MeanL0, double NeverFiredFraction,
    long Tokens, long Positions, long Sequences);

public static class CrosscoderEvaluator
{
    /// <summary>Per site: FVU = Σ‖h−a'‖² / Σ‖h−mean h‖², mean cosine(h, a'), and the spliced-in loss (h^s replaced
    /// by a'^s computed from the clean activations of all sites, the rest of the model run on it) against the
    /// clean and zero-ablated losses. Losses are mean cross-entropy over labelled positions, model in float64.</summary>
    public static CrosscoderEvaluation Evaluate(ModelWeights weights, CrosscoderWeights crosscoder, TokenDataset data,
        IProgress<(int Done, int Total)>? progress = null)
    {
        var siteNames = weights.Config.SiteNames();
        int[] siteIndex = crosscoder.Config.Sites.Select(s => siteNames.ToList().IndexOf(s)).ToArray();
        if (siteIndex.Any(i => i < 0)) throw new ArgumentException("crosscoder site not in model");
        int S = siteIndex.Length, d = weights.Config.DModel, n = crosscoder.Config.Width;
        using var model = new Transformer(weights, ScalarType.Float64);
        using var cc = Crosscoder.FromWeights(crosscoder);
        using var noGrad = no_grad();

        var errSq = new double[S]; var sumSq = new double[S]; var cos = new double[S];
        var sum = new double[S, d];
        var splice = new double[S]; var zero = new double[S];
        double clean = 0, l0Sum = 0; long tokens = 0, positions = 0;
        var fired = zeros(n, ScalarType.Bool);
        int done = 0;
        foreach (var group in data.Sequences.GroupBy(s => s.Tokens.Length))
        {
            var seqs = group.ToList();
            for (int start = 0; start < seqs.Count; start += 256)
            {
                using var scope = NewDisposeScope();
                var chunk = seqs.GetRange(start, Math.Min(256, seqs.Count - start));
                var (tok, lab) = Transformer.Batch(chunk);
                long B = tok.shape[0], T = tok.shape[1];
                var sites = new List<Tensor>();
                var logits = model.Forward(tok, sites);
                var target = lab.reshape(-1);
                double CE(Tensor lg) => nn.functional.cross_entropy(lg.reshape(-1, weights.Config.DVocabOut), target, ignore_index: -1,
                    reduction: nn.Reduction.Sum).item<double>();
                clean += CE(logits);
                positions += target.ne(-1).sum().item<long>();

                var x = stack(siteIndex.Select(i => sites[i]).ToArray(), 2).reshape(-1, S, d);   // [B·T, S, d] float64
                var (f32, r32) = cc.Run(x.to(ScalarType.Float32));
                var r = r32.to(ScalarType.Float64);
                var fb = f32.gt(0);
                fired.logical_or_(fb.any(0));
                l0Sum += fb.sum().item<long>();
                tokens += x.shape[0];
                var e = (x - r).pow(2).sum(2).sum(dim: 0);                                        // [S]
                var q = x.pow(2).sum(2).sum(dim: 0);
                var c = nn.functional.cosine_similarity(x, r, dim: 2, eps: 1e-12).sum(dim: 0);
                var sx = x.sum(dim: 0);
                var (ea, qa, ca, sxa) = (e.data<double>().ToArray(), q.data<double>().ToArray(), c.data<double>().ToArray(), sx.contiguous().data<double>().ToArray());
                for (int s = 0; s < S; s++)
                {
                    errSq[s] += ea[s]; sumSq[s] += qa[s]; cos[s] += ca[s];
                    for (int i = 0; i < d; i++) sum[s, i] += sxa[s * d + i];
                }
                var recon = r.reshape(B, T, S, d);
                for (int s = 0; s < S; s++)
                {
                    int site = siteIndex[s], si = s;
                    splice[s] += CE(model.Forward(tok, patch: (i, h) => i == site ? recon.select(2, si) : h));
                    zero[s] += CE(model.Forward(tok, patch: (i, h) => i == site ? zeros_like(h) : h));
                }
                done += chunk.Count;
                progress?.Report((done, data.Count));
            }
        }
        double cleanLoss = clean / positions;
        var metrics = new List<SiteMetrics>();
        for (int s = 0; s < S; s++)
        {
            double meanSq = 0;
            for (int i = 0; i < d; i++) meanSq += sum[s, i] / tokens * (sum[s, i] / tokens);
            double variance = sumSq[s] - tokens * meanSq;
            double sp = splice[s] / positions, z = zero[s] / positions;
            metrics.Add(new SiteMetrics(crosscoder.Config.Sites[s], errSq[s] / variance, cos[s] / tokens, sp, z,
                (z - sp) / (z - cleanLoss)));
        }
        double never = 1 - fired.sum().item<long>() / (double)n;
        fired.Dispose();
        return new CrosscoderEvaluation(metrics, cleanLoss, metrics.Average(m => m.Fvu), l0Sum / tokens, never, tokens, positions, data.Count);
    }
}
