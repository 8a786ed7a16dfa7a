using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The crosscoder-tables strategy on one sequence, split in two. <see cref="Prepare"/> computes everything
/// that does not depend on ε: ε at h⁰ (L2), each layer's table attention trace and decoder
/// difference, each MLP's nominal pre-activations, exact-identity linearisation errors E (T2) and transition error,
/// and the nominal cross-entropies. <see cref="Propagate"/> runs the ε recursion (L5 in T1, L4's active-set form in
/// T2, L1 capped by IP) into a <see cref="SequenceBound"/>. The strategy writes its transcript from it; the bound-sensitivity analysis re-runs
/// <see cref="Propagate"/> with one feature pair's interaction taken out of E, which is a counterfactual, not a proof.</summary>
public sealed class TablesSequence
{
    public required int[] Labels { get; init; }
    public required double[] Eps0 { get; init; }
    public required long L2Flops { get; init; }
    /// <summary>Per layer: the nominal attention from the tables, ‖D(f) + attn'‖ per position, and its FLOPs.</summary>
    public required IntervalModel.AttentionTrace[] Attn { get; init; }
    public required double[][] Delta { get; init; }
    public required long[] AttnFlops { get; init; }
    /// <summary>Per MLP layer and position: the nominal pre-activation c + s, the enclosed linearisation error E per
    /// neuron, ‖Σ_i f_i e_i + e₀‖ (upper) and Σ_m |E_m| ‖W_out[m]‖ (upper). Null rows for attention-only layers.</summary>
    public required Iv[][][] Pre { get; init; }
    public required Iv[][][] E { get; init; }
    public required double[][] Transition { get; init; }
    public required double[][] EOut { get; init; }
    public required long[] MlpFlops { get; init; }
    /// <summary>The logit differences z'_v − z'_y at labelled positions (null elsewhere), and the FLOPs of the logits.</summary>
    public required Iv[]?[] Diffs { get; init; }
    public required long LogitFlops { get; init; }

    public static TablesSequence Prepare(ModelConfig c, IntervalModel model, Tables tab, PlainCrosscoder encoder, int embedSite,
        (int Index, double Value)[][] f, Sequence seq)
    {
        int T = f.Length, L = c.NLayers;
        var nominal = encoder.Decode(f, embedSite);
        var eps0 = new double[T];
        for (int t = 0; t < T; t++) eps0[t] = CrosscoderStrategy.L2Eps(model.Embed(seq.Tokens[t], t), nominal[t]);
        long nnz = f.Sum(x => (long)x.Length);
        var attn = new IntervalModel.AttentionTrace[L]; var delta = new double[L][]; var attnFlops = new long[L];
        var pre = new Iv[L][][]; var e = new Iv[L][][]; var transition = new double[L][]; var eOut = new double[L][]; var mlpFlops = new long[L];
        for (int l = 0; l < L; l++)
        {
            var at = tab.Attn[l];
            attn[l] = CrosscoderStrategy.TableAttention(c, at, f);
            delta[l] = new double[T];
            for (int t = 0; t < T; t++) delta[l][t] = IntervalModel.NormUpper(IntervalModel.Add(Tables.Combine(f[t], at.D, at.D0), attn[l].Output[t]));
            attnFlops[l] = CrosscoderStrategy.TableAttentionFlops(c, f);
            if (c.AttnOnly) continue;
            var mt = tab.Mlp[l]!;
            pre[l] = new Iv[T][]; e[l] = new Iv[T][]; transition[l] = new double[T]; eOut[l] = new double[T];
            var zero = new Iv[c.DMlp].Select(_ => Iv.Zero).ToArray();
            for (int t = 0; t < T; t++)
            {
                var s = Tables.Combine(f[t], mt.U, zero);
                pre[l][t] = IntervalModel.Add(mt.C, s);
                // E_m = ReLU(c_m + s_m) − ReLU(c_m) − g_m s_m (exact identity, T2), enclosed.
                e[l][t] = new Iv[c.DMlp];
                for (int m = 0; m < c.DMlp; m++) e[l][t][m] = Iv.Relu(pre[l][t][m]) - Iv.Relu(mt.C[m]) - (mt.G[m] ? s[m] : Iv.Zero);
                eOut[l][t] = ErrorOut(e[l][t], mt.WoutRowNorm);
                transition[l][t] = IntervalModel.NormUpper(Tables.Combine(f[t], mt.E, mt.E0));
                mlpFlops[l] += (long)f[t].Length * 2 * (c.DMlp + c.DModel) + 6L * c.DMlp + 2L * c.DModel + Flops.Norm(c.DModel) + 2L * c.DMlp + 3;
            }
        }
        var diffs = new Iv[]?[T];
        for (int t = 0; t < T; t++)
            diffs[t] = seq.Labels[t] < 0 ? null : IntervalModel.Differences(Tables.Combine(f[t], tab.Unembed, tab.Unembed0), seq.Labels[t]);
        long zFlops = f.Where((_, t) => seq.Labels[t] >= 0).Sum(ft => (long)ft.Length * 2 * c.DVocabOut) + seq.LabelledCount * (long)c.DVocabOut;
        return new TablesSequence
        {
            Labels = seq.Labels, Eps0 = eps0, L2Flops = CrosscoderStrategy.L2Flops(c, nnz, T),
            Attn = attn, Delta = delta, AttnFlops = attnFlops, Pre = pre, E = e, Transition = transition, EOut = eOut, MlpFlops = mlpFlops,
            Diffs = diffs, LogitFlops = zFlops,
        };
    }

    /// <summary>Σ_m |E_m| ‖W_out[m]‖, rounded up.</summary>
    public static double ErrorOut(Iv[] e, double[] woutRowNorm)
    {
        double s = 0;
        for (int m = 0; m < e.Length; m++) s = Up.Add(s, Up.Mul(e[m].Mag, woutRowNorm[m]));
        return s;
    }

    /// <param name="errorOut">Optional replacement of Σ_m |E_m| ‖W_out[m]‖ at (layer, position); null keeps the prepared value.</param>
    public SequenceBound Propagate(ModelConfig c, Norms norms, double[][] trivial, Func<int, int, double?>? errorOut = null)
    {
        int T = Eps0.Length;
        var blocks = new List<(double[], long, double[][][]?)>();
        var eps = Eps0;
        for (int l = 0; l < c.NLayers; l++)
        {
            var (pert, centres) = CrosscoderStrategy.AttentionPerturbation(c, norms, l, Attn[l], eps);
            var next = new double[T];
            for (int t = 0; t < T; t++) next[t] = CrosscoderStrategy.AfterAttention(eps[t], pert[t], Delta[l][t]);
            blocks.Add((next, AttnFlops[l] + CrosscoderStrategy.PerturbationFlops(c, T) + 2L * T, centres));
            eps = next;
            if (c.AttnOnly) continue;
            next = new double[T];
            for (int t = 0; t < T; t++)
                next[t] = CrosscoderStrategy.AfterMlp(eps[t], norms.ActiveLipschitz(l, Pre[l][t], eps[t]), Up.Add(Transition[l][t], errorOut?.Invoke(l, t) ?? EOut[l][t]));
            blocks.Add((next, MlpFlops[l], null));
            eps = next;
        }
        var (capped, uncapped, errors) = CrosscoderStrategy.L1(Labels, t => Diffs[t]!, eps, norms, trivial);
        return new SequenceBound(Eps0, L2Flops, blocks, capped, uncapped, LogitFlops, errors);
    }
}
