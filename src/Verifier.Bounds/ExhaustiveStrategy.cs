using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>crosscoder-exhaustive (BOUNDS.md §2): per sequence, the crosscoder's features (advice) give nominal
/// activations a'^s at every crosscoder site; ε^s_t ≥ ‖h^s_t − a'^s_t‖ is bounded by L2 at h⁰ and carried
/// through each sub-block by L3 with L5 (attention) or L4 (MLP), each sub-block run on a' in d-space; L1 turns
/// the last ε into a loss bound. Sites the crosscoder lacks take a' = the nominal sub-block output (δ = 0);
/// without h⁰, a'⁰ = h⁰ (ε⁰ = 0).</summary>
public static class ExhaustiveStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var w = inputs.Model; var c = w.Config; var cc = inputs.Crosscoder!;
        var model = new IntervalModel(w);
        var norms = Norms.Compute(w);
        using var tw = new TranscriptWriter(path, inputs.Artefacts(), Strategies.CrosscoderExhaustive,
            new JsonObject { ["crosscoder_sites"] = new JsonArray(cc.Config.Sites.Select(s => (JsonNode)s).ToArray()) });
        int normStep = tw.Add(new TranscriptStep("N1", [], BoundProgram.Scope(("model", "all layers")), norms.ToClaim(), norms.Flops(c), DatasetDependent: false));

        var siteNames = c.SiteNames();
        int[] ccIndexOfSite = siteNames.Select(s => cc.Config.Sites.ToList().IndexOf(s)).ToArray();
        var encoder = new PlainCrosscoder(cc, siteNames);
        var seqSteps = new List<int>(); var sums = new List<double>();
        double adviceBits = 0;
        for (int q = 0; q < inputs.Data.Count; q++)
        {
            ct.ThrowIfCancellationRequested();
            var seq = inputs.Data.Sequences[q];
            int T = seq.Tokens.Length;
            var features = encoder.Encode(w, seq.Tokens);                       // advice: (index, value) per token
            foreach (var f in features) adviceBits += AdviceBits(cc.Config.Width, f.Length);

            // Nominal a' at every model site, and ε at h⁰ (L2).
            var nominal = new Iv[siteNames.Count][][];
            nominal[0] = ccIndexOfSite[0] >= 0 ? encoder.Decode(features, ccIndexOfSite[0]) : Enumerable.Range(0, T).Select(t => model.Embed(seq.Tokens[t], t)).ToArray();
            var eps = new double[T];
            if (ccIndexOfSite[0] >= 0)
                for (int t = 0; t < T; t++) eps[t] = IntervalModel.NormUpper(IntervalModel.Sub(model.Embed(seq.Tokens[t], t), nominal[0][t]));
            long decodeFlops = features.Sum(f => (long)f.Length) * 2 * c.DModel * cc.Config.Sites.Count + (long)T * c.DModel * cc.Config.Sites.Count;
            var data = new JsonObject { ["features"] = new JsonArray(features.Select(f => (JsonNode)new JsonArray(
                f.Select(p => (JsonNode)new JsonArray(p.Index, p.Value)).ToArray())).ToArray()) };
            int prev = tw.Add(new TranscriptStep("L2", [], BoundProgram.Scope(("sequence", q), ("site", siteNames[0])),
                new JsonObject { ["eps"] = BoundProgram.Array(eps) },
                decodeFlops + (ccIndexOfSite[0] >= 0 ? T * (2L * c.DModel + Flops.Norm(c.DModel)) : 0), DatasetDependent: true, data));
            int adviceStep = prev;

            int site = 0;
            for (int l = 0; l < c.NLayers; l++)
            {
                // Attention sub-block: site → site + 1 (L3 with L5).
                var trace = model.Attention(l, nominal[site]);
                var next = Enumerable.Range(0, T).Select(t => IntervalModel.Add(nominal[site][t], trace.Output[t])).ToArray();
                bool decoded = ccIndexOfSite[site + 1] >= 0;
                nominal[site + 1] = decoded ? encoder.Decode(features, ccIndexOfSite[site + 1]) : next;
                var pert = AttentionPerturbation(c, norms, l, trace, eps);
                var epsNext = new double[T];
                for (int t = 0; t < T; t++)
                {
                    double delta = decoded ? IntervalModel.NormUpper(IntervalModel.Sub(next[t], nominal[site + 1][t])) : 0;
                    epsNext[t] = Up.Add(Up.Add(eps[t], pert[t]), delta);
                }
                prev = tw.Add(new TranscriptStep("L5", [prev, adviceStep, normStep],
                    BoundProgram.Scope(("sequence", q), ("layer", l), ("block", "attn"), ("site", siteNames[site + 1])),
                    new JsonObject { ["eps"] = BoundProgram.Array(epsNext) }, AttentionStepFlops(c, T, decoded), DatasetDependent: true));
                eps = epsNext; site++;
                if (c.AttnOnly) continue;

                // MLP sub-block: site → site + 1 (L3 with L4).
                var mlpNext = Enumerable.Range(0, T).Select(t => IntervalModel.Add(nominal[site][t], model.Mlp(l, nominal[site][t]))).ToArray();
                decoded = ccIndexOfSite[site + 1] >= 0;
                nominal[site + 1] = decoded ? encoder.Decode(features, ccIndexOfSite[site + 1]) : mlpNext;
                epsNext = new double[T];
                for (int t = 0; t < T; t++)
                {
                    double delta = decoded ? IntervalModel.NormUpper(IntervalModel.Sub(mlpNext[t], nominal[site + 1][t])) : 0;
                    epsNext[t] = Up.Add(Up.Add(eps[t], Up.Mul(norms.KMlp[l], eps[t])), delta);
                }
                prev = tw.Add(new TranscriptStep("L4", [prev, adviceStep, normStep],
                    BoundProgram.Scope(("sequence", q), ("layer", l), ("block", "mlp"), ("site", siteNames[site + 1])),
                    new JsonObject { ["eps"] = BoundProgram.Array(epsNext) }, MlpStepFlops(c, T, decoded), DatasetDependent: true));
                eps = epsNext; site++;
            }

            // L1: CE(z, y) ≤ CE(z', y) + ε_t · max_i ‖u_i − u_y‖.
            var sum = Iv.Zero;
            double lossSum = 0;
            for (int t = 0; t < T; t++)
            {
                int y = seq.Labels[t];
                if (y < 0) continue;
                var ce = IntervalModel.CrossEntropy(model.Logits(nominal[site][t]), y);
                lossSum = Up.Add(lossSum, Up.Add(ce.Hi, Up.Mul(eps[t], norms.UnembedDiff[y])));
            }
            int final = tw.Add(new TranscriptStep("L1", [prev, adviceStep, normStep], BoundProgram.Scope(("sequence", q)),
                new JsonObject { ["loss_sum"] = lossSum },
                seq.LabelledCount * (2L * c.DModel * c.DVocabOut + c.DVocabOut + Flops.CrossEntropy(c.DVocabOut) + 3), DatasetDependent: true));
            seqSteps.Add(final); sums.Add(lossSum);
            if (q % 16 == 0 || q == inputs.Data.Count - 1) progress?.Report((q + 1, inputs.Data.Count));
        }
        var (b0, finalStep) = BoundProgram.Mean(tw, seqSteps, sums, inputs.Positions);
        var cost = tw.Complete([], b0, finalStep, null, adviceBits);
        return (b0, cost, tw.StepCount);
    }

    /// <summary>Bits to name nnz of n features and give their float64 values: log₂ C(n, nnz) + 64·nnz.</summary>
    public static double AdviceBits(int n, int nnz)
    {
        double lg = 0;
        for (int i = 0; i < nnz; i++) lg += Math.Log2(n - i) - Math.Log2(i + 1);
        return lg + 64.0 * nnz;
    }

    /// <summary>L5 per position t: Σ_heads ‖W_O‖ (min(2, e^{2η_t} − 1) · max_{s≤t} ‖v'_s − c‖ + ‖W_V‖ max_{s≤t} ε_s),
    /// η_t = max_{s≤t} (‖W_Q‖ε_t‖k'_s‖ + ‖q'_t‖‖W_K‖ε_s + ‖W_Q‖‖W_K‖ε_tε_s)/√d_head, c = the mean of the v'_s midpoints.</summary>
    static double[] AttentionPerturbation(ModelConfig c, Norms n, int l, IntervalModel.AttentionTrace tr, double[] eps)
    {
        int T = eps.Length, dh = c.DHead;
        double invSqrt = Up.Div(1, Math.BitDecrement(Math.Sqrt(dh)));
        var pert = new double[T];
        for (int h = 0; h < c.NHeads; h++)
        {
            double nq = n.WQ[l][h], nk = n.WK[l][h], nv = n.WV[l][h], no = n.WO[l][h];
            var qn = tr.Q[h].Select(IntervalModel.NormUpper).ToArray();
            var kn = tr.K[h].Select(IntervalModel.NormUpper).ToArray();
            double maxEps = 0;
            for (int t = 0; t < T; t++)
            {
                maxEps = Math.Max(maxEps, eps[t]);
                double eta = 0;
                for (int s = 0; s <= t; s++)
                {
                    double e = Up.Add(Up.Add(Up.Mul(Up.Mul(nq, eps[t]), kn[s]), Up.Mul(Up.Mul(qn[t], nk), eps[s])), Up.Mul(Up.Mul(nq, nk), Up.Mul(eps[t], eps[s])));
                    eta = Math.Max(eta, Up.Mul(e, invSqrt));
                }
                double pdiff = Math.Min(2.0, Math.BitIncrement(Up.Exp(Up.Mul(2, eta)) - 1));
                var centre = new double[dh];
                for (int s = 0; s <= t; s++) for (int e = 0; e < dh; e++) centre[e] += 0.5 * (tr.V[h][s][e].Lo + tr.V[h][s][e].Hi) / (t + 1);
                double r = 0;
                var cIv = centre.Select(Iv.Point).ToArray();
                for (int s = 0; s <= t; s++) r = Math.Max(r, IntervalModel.NormUpper(IntervalModel.Sub(tr.V[h][s], cIv)));
                double dz = Up.Add(Up.Mul(pdiff, r), Up.Mul(nv, maxEps));
                pert[t] = Up.Add(pert[t], Up.Mul(no, dz));
            }
        }
        return pert;
    }

    /// <summary>Nominal attention (Flops.Attention), residual add, δ (subtract + norm, where decoded), and L5:
    /// ‖q'‖, ‖k'‖ per head and position, 8 per causal pair for η and 1 for its max, 4 per position for the
    /// pattern bound, the centre (2·d_head per pair), ‖v'_s − c‖ per pair, 4 per position for Δz and ‖W_O‖·,
    /// and 4 per position for ε^{s⁺} = ε + Pert + δ.</summary>
    public static long AttentionStepFlops(ModelConfig c, int T, bool decoded)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, pairs = (long)T * (T + 1) / 2;
        long f = Flops.Attention(c, T) + T * d;
        if (decoded) f += T * (d + Flops.Norm(d));
        f += H * (2 * T * Flops.Norm(dh) + pairs * 9 + T * 4 + pairs * 2 * dh + pairs * (dh + Flops.Norm(dh)) + T * 4);
        f += T * 4;
        return f;
    }

    /// <summary>Nominal MLP and residual add, δ (where decoded), and ε + K·ε + δ (3 per position).</summary>
    public static long MlpStepFlops(ModelConfig c, int T, bool decoded)
    {
        long d = c.DModel;
        long f = T * (Flops.Mlp(c) + d) + T * 3;
        if (decoded) f += T * (d + Flops.Norm(d));
        return f;
    }
}

/// <summary>The norms every crosscoder strategy needs (proofs/N1-operator-norms.md), computed once.</summary>
public sealed class Norms
{
    public required double[][] WQ, WK, WV, WO;
    public required double[] KMlp;
    /// <summary>max_i ‖u_i − u_y‖ per label y, u_i the columns of W_U.</summary>
    public required double[] UnembedDiff;

    public static Norms Compute(ModelWeights w)
    {
        var c = w.Config; int d = c.DModel, dh = c.DHead, H = c.NHeads, L = c.NLayers, V = c.DVocabOut;
        double[][] Per(string name, int rows, int cols) => Enumerable.Range(0, L).Select(l =>
            Enumerable.Range(0, H).Select(h => OperatorNorms.Upper(w[$"blocks.{l}.attn.{name}"].Data, h * rows * cols, rows, cols)).ToArray()).ToArray();
        var wu = w["unembed.W_U"].Data;
        var ud = new double[V];
        for (int y = 0; y < V; y++)
            for (int i = 0; i < V; i++)
            {
                if (i == y) continue;
                double s = 0;
                for (int j = 0; j < d; j++) { var diff = Iv.Point(wu[j * V + i]) - Iv.Point(wu[j * V + y]); s = Up.Add(s, Up.Mul(diff.Mag, diff.Mag)); }
                ud[y] = Math.Max(ud[y], Up.Sqrt(s));
            }
        return new Norms
        {
            WQ = Per("W_Q", d, dh), WK = Per("W_K", d, dh), WV = Per("W_V", d, dh), WO = Per("W_O", dh, d),
            KMlp = c.AttnOnly ? new double[L] : Enumerable.Range(0, L).Select(l =>
                OperatorNorms.MlpLipschitz(w[$"blocks.{l}.mlp.W_in"].Data, w[$"blocks.{l}.mlp.W_out"].Data, d, c.DMlp)).ToArray(),
            UnembedDiff = ud,
        };
    }

    public JsonObject ToClaim()
    {
        JsonArray Nested(double[][] x) => new(x.Select(r => (JsonNode)BoundProgram.Array(r)).ToArray());
        return new JsonObject
        {
            ["W_Q"] = Nested(WQ), ["W_K"] = Nested(WK), ["W_V"] = Nested(WV), ["W_O"] = Nested(WO),
            ["K_mlp"] = BoundProgram.Array(KMlp), ["unembed_diff"] = BoundProgram.Array(UnembedDiff),
        };
    }

    public long Flops(ModelConfig c)
    {
        long f = 4L * c.NLayers * c.NHeads * OperatorNorms.Flops(c.DModel, c.DHead);
        if (!c.AttnOnly) f += c.NLayers * OperatorNorms.MlpLipschitzFlops(c.DModel, c.DMlp);
        f += (long)c.DVocabOut * (c.DVocabOut - 1) * (3L * c.DModel + 2);
        return f;
    }
}

/// <summary>The crosscoder in plain float64: encoding (to choose the advice) and interval decoding.</summary>
public sealed class PlainCrosscoder(CrosscoderWeights cc, IReadOnlyList<string> modelSites)
{
    readonly int[] _modelSiteOfCc = cc.Config.Sites.Select(s => modelSites.ToList().IndexOf(s)).ToArray();

    /// <summary>Features of every token: the crosscoder's encoder on the model's float64 activations. Any values
    /// would give a sound bound (the lemmas hold for every a'); these make it tight.</summary>
    public (int Index, double Value)[][] Encode(ModelWeights w, int[] tokens)
    {
        var c = cc.Config; int S = c.Sites.Count, d = c.DModel, n = c.Width;
        var sites = ReferenceForward.Run(w, tokens).Sites;
        var enc = cc["W_enc"].Data; var benc = cc["b_enc"].Data;
        var result = new (int, double)[tokens.Length][];
        for (int t = 0; t < tokens.Length; t++)
        {
            var pre = (double[])benc.Clone();
            for (int s = 0; s < S; s++)
            {
                var h = sites[_modelSiteOfCc[s]];
                for (int i = 0; i < d; i++)
                {
                    double x = h[t, i];
                    int row = (s * d + i) * n;
                    for (int j = 0; j < n; j++) pre[j] += x * enc[row + j];
                }
            }
            IEnumerable<int> active = Enumerable.Range(0, n).Where(j => pre[j] > 0).OrderByDescending(j => pre[j]).ThenBy(j => j);
            if (c.Mode != CrosscoderModes.ReluL1) active = active.Take(c.K!.Value);
            result[t] = active.OrderBy(j => j).Select(j => (j, pre[j])).ToArray();
        }
        return result;
    }

    /// <summary>a'^s_t = Σ_i f_ti W_dec^s[i] + b_dec^s for crosscoder site index s, as enclosing boxes.</summary>
    public Iv[][] Decode((int Index, double Value)[][] features, int s)
    {
        var c = cc.Config; int S = c.Sites.Count, d = c.DModel;
        var dec = cc["W_dec"].Data; var bdec = cc["b_dec"].Data;
        var result = new Iv[features.Length][];
        for (int t = 0; t < features.Length; t++)
        {
            var a = new Iv[d];
            for (int i = 0; i < d; i++) a[i] = Iv.Point(bdec[s * d + i]);
            foreach (var (j, v) in features[t])
            {
                int row = (j * S + s) * d;
                for (int i = 0; i < d; i++) a[i] += dec[row + i] * Iv.Point(v);
            }
            result[t] = a;
        }
        return result;
    }
}
