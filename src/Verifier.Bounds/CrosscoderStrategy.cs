using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The crosscoder strategies (BOUNDS.md §2–3). Per sequence, the crosscoder's features (advice, any
/// values would be sound) give nominal activations a'^s; ε^s_t ≥ ‖h^s_t − a'^s_t‖ starts at h⁰ (L2), is carried
/// through each sub-block by L3 with L5 (attention) or L4 (MLP), and L1 turns the last ε into a loss bound,
/// capped position by position by the trivial bound (IP).
/// exhaustive: each sub-block is run on a' in d-space. tables: nominal q', k', v', the attention output, the MLP
/// pre-activations and the logits come from per-feature tables (T1), and the MLP's δ from the linearisation at
/// the bias point with its exact error E (T2), whose pattern over the data gives the ReLU interaction terms.</summary>
/// <summary>One sequence's crosscoder bound, before it is written: ε after L2 and after each sub-block in order
/// (attention, then MLP, per layer) with each block's FLOPs and, for attention, L5's centres (null for an MLP); the
/// L1 loss sum (capped by IP, with slack), the same sum without the cap, and the FLOPs of the logits.</summary>
public sealed record SequenceBound(double[] Eps0, long L2Flops, IReadOnlyList<(double[] Eps, long Flops, double[][][]? Centres)> Blocks,
    double LossSum, double UncappedLossSum, long LogitFlops, int Errors);

public static class CrosscoderStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps, long Errors) Run(BoundInputs inputs, string path, bool tables,
        IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var w = inputs.Model; var c = w.Config; var cc = inputs.Crosscoder!;
        var siteNames = c.SiteNames();
        int[] ccSite = siteNames.Select(s => cc.Config.Sites.ToList().IndexOf(s)).ToArray();
        if (tables && ccSite.Any(i => i < 0))
            throw new UsageException($"crosscoder-tables needs a crosscoder over every residual site ({string.Join(", ", siteNames)}); " +
                $"this one has {string.Join(", ", cc.Config.Sites)}. Use crosscoder-exhaustive instead.");
        var model = new IntervalModel(w);
        var norms = Norms.Compute(w);
        string name = tables ? Strategies.CrosscoderTables : Strategies.CrosscoderExhaustive;
        using var tw = new TranscriptWriter(path, inputs.Artefacts(), name,
            new JsonObject { ["crosscoder_sites"] = new JsonArray(cc.Config.Sites.Select(s => (JsonNode)s).ToArray()) });
        int normStep = tw.Add(new TranscriptStep("N1", [], BoundProgram.Scope(("model", "all layers")), norms.ToClaim(), norms.Flops(c), DatasetDependent: false));
        var trivial = TrivialStrategy.Table(w, ct);
        var ipSteps = Enumerable.Range(0, c.NCtx).Select(t => tw.Add(new TranscriptStep("IP", [], BoundProgram.Scope(("position", t)),
            new JsonObject { ["ce_by_label"] = BoundProgram.Array(trivial[t]) }, TrivialStrategy.TableFlops(c, t), DatasetDependent: false))).ToArray();
        Tables? tab = null;
        int tableStep = -1;
        if (tables)
        {
            tab = Tables.Build(w, cc, ccSite);
            tableStep = tw.Add(new TranscriptStep("T1", [], BoundProgram.Scope(("tables", "Q K V OV D U E UU")), new JsonObject(), tab.Flops, DatasetDependent: false,
                new JsonObject { ["gates"] = new JsonArray(tab.Mlp.Select(mt => (JsonNode)new JsonArray((mt?.G ?? []).Select(g => (JsonNode)(g ? 1 : 0)).ToArray())).ToArray()) }));
        }

        var encoder = new PlainCrosscoder(cc, siteNames);
        var interactions = new InteractionCollector(c, cc.Config.Width);
        var seqSteps = new List<int>(); var sums = new List<double>();
        double adviceBits = 0; long errors = 0;
        for (int q = 0; q < inputs.Data.Count; q++)
        {
            ct.ThrowIfCancellationRequested();
            var seq = inputs.Data.Sequences[q];
            int T = seq.Tokens.Length;
            var f = encoder.Encode(w, seq.Tokens);
            foreach (var ft in f) adviceBits += AdviceBits(cc.Config.Width, ft.Length);
            interactions.CountTokens(f);

            SequenceBound bound;
            if (tables)
            {
                var ts = TablesSequence.Prepare(c, model, tab!, encoder, ccSite[0], f, seq);
                for (int l = 0; l < c.NLayers && !c.AttnOnly; l++)
                    for (int t = 0; t < T; t++) interactions.Relu(l, f[t], tab!.Mlp[l]!.U, ts.E[l][t]);
                bound = ts.Propagate(c, norms, trivial);
            }
            else bound = Exhaustive(c, model, encoder, norms, ccSite, f, seq, trivial);
            var data = new JsonObject { ["features"] = new JsonArray(f.Select(ft => (JsonNode)new JsonArray(
                ft.Select(p => (JsonNode)new JsonArray(p.Index, p.Value)).ToArray())).ToArray()) };
            int final = Write(tw, c, siteNames, q, seq, data, bound, tables, normStep, tableStep, ipSteps);
            double lossSum = bound.LossSum;
            seqSteps.Add(final); sums.Add(lossSum); errors += bound.Errors;
            if (q % 16 == 0 || q == inputs.Data.Count - 1) progress?.Report((q + 1, inputs.Data.Count));
        }
        JsonArray inter = [];
        if (tables)
        {
            var (list, flops) = interactions.Ranked(tab!);
            inter = list;
            // The attention pair table B_ij = Q_i · K_j over the features that occur is dataset-independent work.
            tw.Add(new TranscriptStep("INFO", [tableStep], BoundProgram.Scope(("work", "attention pair table B_ij for the interaction terms")), new JsonObject(), flops, DatasetDependent: false));
        }
        var (b0, finalStep) = BoundProgram.Mean(tw, seqSteps, sums, inputs.Positions, errors);
        var cost = tw.Complete(inter, b0, finalStep, null, adviceBits);
        return (b0, cost, tw.StepCount, errors);
    }

    /// <summary>One sequence's steps: L2 (with the features as advice), then per layer T1/L5 (attention, with its
    /// centres) and T2/L4 (MLP), then L1 capped by IP. Returns the L1 step.</summary>
    static int Write(TranscriptWriter tw, ModelConfig c, IReadOnlyList<string> siteNames, int q, Sequence seq, JsonObject data,
        SequenceBound b, bool tables, int normStep, int tableStep, int[] ipSteps)
    {
        int prev = tw.Add(new TranscriptStep("L2", [], BoundProgram.Scope(("sequence", q), ("site", siteNames[0])),
            new JsonObject { ["eps"] = BoundProgram.Array(b.Eps0) }, b.L2Flops, DatasetDependent: true, data));
        int[] common = tables ? [prev, normStep, tableStep] : [prev, normStep];
        for (int k = 0; k < b.Blocks.Count; k++)
        {
            var (eps, flops, centres) = b.Blocks[k];
            bool attn = centres is not null;
            int l = c.AttnOnly ? k : k / 2;
            prev = tw.Add(new TranscriptStep(attn ? (tables ? "T1" : "L5") : (tables ? "T2" : "L4"), [prev, .. common],
                BoundProgram.Scope(("sequence", q), ("layer", l), ("block", attn ? "attn" : "mlp"), ("site", siteNames[k + 1])),
                new JsonObject { ["eps"] = BoundProgram.Array(eps) }, flops, DatasetDependent: true,
                attn ? new JsonObject { ["centres"] = new JsonArray(centres!.Select(hc => (JsonNode)new JsonArray(hc.Select(v => (JsonNode)BoundProgram.Array(v)).ToArray())).ToArray()) } : null));
        }
        return tw.Add(new TranscriptStep("L1", [prev, .. common, .. ipSteps], BoundProgram.Scope(("sequence", q)),
            new JsonObject { ["loss_sum"] = b.LossSum, ["errors"] = b.Errors }, b.LogitFlops + seq.LabelledCount * (Flops.CrossEntropy(c.DVocabOut) + 4L), DatasetDependent: true));
    }

    /// <summary>L2: ε⁰_t = ‖h⁰_t − a'⁰_t‖, rounded up, with slack; and its FLOPs (decode nnz rows, subtract, norm).</summary>
    internal static double L2Eps(Iv[] h0, Iv[] nominal) => Claim.Slack(IntervalModel.NormUpper(IntervalModel.Sub(h0, nominal)));
    internal static long L2Flops(ModelConfig c, long nnz, int T) => nnz * 2 * c.DModel + T * (3L * c.DModel + Flops.Norm(c.DModel));

    /// <summary>L3: ε + Pert + δ, rounded up, with the model's claim slack (<see cref="ArchIv.Slack"/>: Claim.Slack for a
    /// basic model, R3G's for any other crosscoder-tables covers). Through attention Pert is L5's perturbation; through
    /// the MLP it is k·ε (L4's active-set Lipschitz constant k) or T3's form for another activation.</summary>
    internal static double After(ModelConfig c, double eps, double pert, double delta) => ArchIv.Slack(c, Up.Add(Up.Add(eps, pert), delta));

    /// <summary>L1 capped by IP: Σ_t min(CE(z'_t, y) + ε_t max_i ‖u_i − u_y‖, trivial[t][y]) over labelled positions
    /// (with slack), the same sum without the cap, and the positions not certified correct (ACC: some
    /// upper(z'_v − z'_y) + ε_t max_i ‖u_i − u_y‖ ≥ 0).</summary>
    internal static (double Capped, double Uncapped, int Errors) L1(int[] labels, Func<int, Iv[]> differences, double[] eps, Norms norms, double[][] trivial,
        ModelConfig c)
    {
        double capped = 0, uncapped = 0;
        int errors = 0;
        for (int t = 0; t < labels.Length; t++)
        {
            int y = labels[t];
            if (y < 0) continue;
            var d = differences(t);
            double margin = Up.Mul(eps[t], norms.UnembedDiff[y]);
            double via = Up.Add(IntervalModel.CrossEntropyFromDifferences(d).Hi, margin);
            capped = Up.Add(capped, Math.Min(via, trivial[t][y]));
            uncapped = Up.Add(uncapped, via);
            if (!(Up.Add(IntervalModel.MaxUpper(d), margin) < 0)) errors++;
        }
        return (ArchIv.Slack(c, capped), uncapped, errors);
    }

    /// <summary>crosscoder-exhaustive on one sequence: each sub-block run on a' in d-space (L2, L5, L4, L1 capped by IP).</summary>
    static SequenceBound Exhaustive(ModelConfig c, IntervalModel model, PlainCrosscoder encoder, Norms norms, int[] ccSite,
        (int Index, double Value)[][] f, Sequence seq, double[][] trivial)
    {
        int T = seq.Tokens.Length, sites = ccSite.Length;
        var nominal = new Iv[sites][][];
        var embed = Enumerable.Range(0, T).Select(t => model.Embed(seq.Tokens[t], t)).ToArray();
        nominal[0] = ccSite[0] >= 0 ? encoder.Decode(f, ccSite[0]) : embed;
        var eps = new double[T];
        if (ccSite[0] >= 0) for (int t = 0; t < T; t++) eps[t] = L2Eps(embed[t], nominal[0][t]);
        long nnz = f.Sum(x => (long)x.Length);
        var eps0 = eps;
        var blocks = new List<(double[], long, double[][][]?)>();
        long DecodeFlops(bool decoded) => decoded ? nnz * 2 * c.DModel + T * (2L * c.DModel + Flops.Norm(c.DModel)) : 0;
        int site = 0;
        for (int l = 0; l < c.NLayers; l++)
        {
            // Attention: site → site + 1.
            var trace = model.Attention(l, nominal[site]);
            bool decoded = ccSite[site + 1] >= 0;
            var next = Enumerable.Range(0, T).Select(t => IntervalModel.Add(nominal[site][t], trace.Output[t])).ToArray();
            nominal[site + 1] = decoded ? encoder.Decode(f, ccSite[site + 1]) : next;
            var (pert, centres) = AttentionPerturbation(c, norms, l, trace, eps);
            var epsNext = new double[T];
            for (int t = 0; t < T; t++)
                epsNext[t] = After(c, eps[t], pert[t], decoded ? IntervalModel.NormUpper(IntervalModel.Sub(next[t], nominal[site + 1][t])) : 0);
            blocks.Add((epsNext, Flops.Attention(c, T) + T * (long)c.DModel + DecodeFlops(decoded) + PerturbationFlops(c, T) + 2L * T, centres));
            eps = epsNext; site++;
            if (c.AttnOnly) continue;

            // MLP: site → site + 1.
            decoded = ccSite[site + 1] >= 0;
            string mm = $"blocks.{l}.mlp.";
            var w = model.Weights;
            var pres = Enumerable.Range(0, T).Select(t => IntervalModel.Affine(nominal[site][t], w[mm + "W_in"].Data, 0, c.DModel, c.DMlp, w[mm + "b_in"].Data, 0)).ToArray();
            var mlpNext = Enumerable.Range(0, T).Select(t => IntervalModel.Add(nominal[site][t], model.Mlp(l, nominal[site][t]))).ToArray();
            nominal[site + 1] = decoded ? encoder.Decode(f, ccSite[site + 1]) : mlpNext;
            epsNext = new double[T];
            for (int t = 0; t < T; t++)
                epsNext[t] = After(c, eps[t], Up.Mul(norms.ActiveLipschitz(l, pres[t], eps[t]), eps[t]), decoded ? IntervalModel.NormUpper(IntervalModel.Sub(mlpNext[t], nominal[site + 1][t])) : 0);
            blocks.Add((epsNext, T * (Flops.Mlp(c) + c.DModel + 2L * c.DMlp + 3) + DecodeFlops(decoded), null));
            eps = epsNext; site++;
        }
        var (capped, uncapped, errors) = L1(seq.Labels, t => IntervalModel.Differences(model.Logits(nominal[site][t]), seq.Labels[t]), eps, norms, trivial, c);
        return new SequenceBound(eps0, ccSite[0] >= 0 ? L2Flops(c, nnz, T) : 0, blocks, capped, uncapped,
            seq.LabelledCount * (2L * c.DModel * c.DVocabOut + c.DVocabOut), errors);
    }

    /// <summary>Bits to name nnz of n features and give their float64 values: log₂ C(n, nnz) + 64·nnz.</summary>
    public static double AdviceBits(int n, int nnz)
    {
        double lg = 0;
        for (int i = 0; i < nnz; i++) lg += Math.Log2(n - i) - Math.Log2(i + 1);
        return lg + 64.0 * nnz;
    }

    /// <summary>Nominal attention from the tables: q', k', v' = Σ_i f_i Q_i + Q₀ (etc.), interval softmax, and
    /// attn'_t − (the skip and decoder difference are added by the caller) = Σ_h Σ_{s≤t} p'_ts (Σ_j f_sj OV_j + OV₀).</summary>
    internal static IntervalModel.AttentionTrace TableAttention(ModelConfig c, Tables.AttentionTables at, (int Index, double Value)[][] f, Iv[]? iota = null, int l = 0)
    {
        int T = f.Length, H = c.NHeads, d = c.DModel;
        var Q = new Iv[H][][]; var K = new Iv[H][][]; var V = new Iv[H][][]; var P = new Iv[H][][];
        var outp = new Iv[T][];
        for (int t = 0; t < T; t++) outp[t] = new Iv[d].Select(_ => Iv.Zero).ToArray();
        // T3: the layer's divisor D_l (√d_head by default) and its window FirstKey(l, t) ≤ s ≤ t (all s ≤ t when global).
        var scale = Iv.Point(1) / ArchIv.Divisor(c, l);
        for (int h = 0; h < H; h++)
        {
            // T3: ι_t·(Σ_i f_ti T_i + T₀) + T_b with ln1's scale; T1 (no normalisation): Σ_i f_ti T_i + T₀.
            Iv I(int t) => iota is null ? Iv.Point(1) : iota[t];
            Q[h] = f.Select((ft, t) => NormTables.Apply(ft, at.Q[h], at.Q0[h], I(t), at.Qb?[h])).ToArray();
            K[h] = f.Select((ft, t) => NormTables.Apply(ft, at.K[h], at.K0[h], I(t), at.Kb?[h])).ToArray();
            V[h] = f.Select((ft, t) => NormTables.Apply(ft, at.V[h], at.V0[h], I(t), at.Vb?[h])).ToArray();
            var ov = f.Select((ft, t) => NormTables.Apply(ft, at.OV[h], at.OV0[h], I(t), at.OVb?[h])).ToArray();
            P[h] = new Iv[T][];
            for (int t = 0; t < T; t++)
            {
                int first = c.FirstKey(l, t);
                var sigma = new Iv[t - first + 1];
                for (int s = first; s <= t; s++) sigma[s - first] = IntervalModel.Dot(Q[h][t], K[h][s]) * scale;
                P[h][t] = IntervalModel.Softmax(sigma);   // indexed s − first
                for (int s = first; s <= t; s++)
                    for (int i = 0; i < d; i++) outp[t][i] += P[h][t][s - first] * ov[s][i];
            }
        }
        return new IntervalModel.AttentionTrace(Q, K, V, P, outp);
    }

    internal static long TableAttentionFlops(ModelConfig c, (int Index, double Value)[][] f, int l = 0)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, T = f.Length, pairs = Flops.Pairs(c, f.Length, l);
        long nnz = f.Sum(x => (long)x.Length);
        return H * (nnz * 2 * (3 * dh + d) + T * (3 * dh + d)) + H * (pairs * (2 * dh + 1) + 4 * pairs + T) + H * pairs * 2 * d
               + nnz * 2 * d + T * d + T * (d + Flops.Norm(d));
    }

    /// <summary>L5 per position t: Σ_heads ‖W_O‖ (min(2, e^{2η_t} − 1) · max_{s≤t} ‖v'_s − c‖ + ‖W_V‖ max_{s≤t} ε_s),
    /// η_t = max_{s≤t} (‖W_Q‖ε_t‖k'_s‖ + ‖q'_t‖‖W_K‖ε_s + ‖W_Q‖‖W_K‖ε_tε_s)/√d_head, c = the mean of the v'_s midpoints.</summary>
    internal static (double[] Pert, double[][][] Centres) AttentionPerturbation(ModelConfig c, Norms n, int l, IntervalModel.AttentionTrace tr, double[] eps)
    {
        int T = eps.Length, dh = c.DHead;
        // 1/D_l from above: the basic √d_head as before; any other divisor (T3) from its enclosure's lower end.
        var (sqrtD, _, factor) = c.AttnDivisor(l);
        double invSqrt = sqrtD && factor == 1 ? Up.Div(1, Math.BitDecrement(Math.Sqrt(dh))) : Up.Div(1, ArchIv.Divisor(c, l).Lo);
        var pert = new double[T];
        var centres = new double[c.NHeads][][];
        for (int h = 0; h < c.NHeads; h++)
        {
            double nq = n.WQ[l][h], nk = n.WK[l][h], nv = n.WV[l][h], no = n.WO[l][h];
            var qn = tr.Q[h].Select(IntervalModel.NormUpper).ToArray();
            var kn = tr.K[h].Select(IntervalModel.NormUpper).ToArray();
            centres[h] = new double[T][];
            for (int t = 0; t < T; t++)
            {
                int first = c.FirstKey(l, t), keys = t - first + 1;   // the window (all s ≤ t when global)
                double maxEps = 0, eta = 0;
                for (int s = first; s <= t; s++)
                {
                    maxEps = Math.Max(maxEps, eps[s]);
                    double e = Up.Add(Up.Add(Up.Mul(Up.Mul(nq, eps[t]), kn[s]), Up.Mul(Up.Mul(qn[t], nk), eps[s])), Up.Mul(Up.Mul(nq, nk), Up.Mul(eps[t], eps[s])));
                    eta = Math.Max(eta, Up.Mul(e, invSqrt));
                }
                double pdiff = Math.Min(2.0, Math.BitIncrement(Up.Exp(Up.Mul(2, eta)) - 1));
                var centre = new double[dh];
                for (int s = first; s <= t; s++) for (int e = 0; e < dh; e++) centre[e] += 0.5 * (tr.V[h][s][e].Lo + tr.V[h][s][e].Hi) / keys;
                double r = 0;
                centres[h][t] = centre;
                var cIv = centre.Select(Iv.Point).ToArray();
                for (int s = first; s <= t; s++) r = Math.Max(r, IntervalModel.NormUpper(IntervalModel.Sub(tr.V[h][s], cIv)));
                double dz = Up.Add(Up.Mul(pdiff, r), Up.Mul(nv, maxEps));
                pert[t] = Up.Add(pert[t], Up.Mul(no, dz));
            }
        }
        return (pert, centres);
    }

    /// <summary>L5's extra work: ‖q'‖, ‖k'‖ per head and position, 9 per causal pair for η and its max, 4 per
    /// position for the pattern bound, the centre (2·d_head per pair), ‖v'_s − c‖ per pair, 4 per position for Δz and ‖W_O‖·.</summary>
    internal static long PerturbationFlops(ModelConfig c, int T, int l = 0)
    {
        long H = c.NHeads, dh = c.DHead, pairs = Flops.Pairs(c, T, l);
        return H * (2 * T * Flops.Norm(dh) + pairs * 9 + T * 4 + pairs * 2 * dh + pairs * (dh + Flops.Norm(dh)) + T * 4);
    }
}
