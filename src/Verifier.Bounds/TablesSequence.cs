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
    /// <summary>T3: the tables (for NL's normalisations) and, per layer and position, ρ ≤ ‖Pa'_t‖ at ln1 and ln2 and, per
    /// position, at ln_final (null without normalisation).</summary>
    public required Tables Tab { get; init; }
    public required double[]?[] Rho1 { get; init; }
    public required double[]?[] Rho2 { get; init; }
    public required double[]? RhoF { get; init; }

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
        var rho1 = new double[]?[L]; var rho2 = new double[]?[L];
        // T3: per token ι = 1/σ(a'_t) and ρ ≤ ‖Pa'_t‖ of a normalisation read through the decoder; ι = 1 without one.
        static (Iv[]? Iota, double[]? Rho) Scales(NormTables? nt, (int Index, double Value)[][] f)
        {
            if (nt is null) return (null, null);
            var r = f.Select(nt.Scale).ToArray();
            return (r.Select(x => x.Iota).ToArray(), r.Select(x => x.Rho).ToArray());
        }
        for (int l = 0; l < L; l++)
        {
            var at = tab.Attn[l];
            var (iota1, r1) = Scales(at.Norm, f);
            rho1[l] = r1;
            attn[l] = CrosscoderStrategy.TableAttention(c, at, f, iota1, l);
            delta[l] = new double[T];
            for (int t = 0; t < T; t++) delta[l][t] = IntervalModel.NormUpper(IntervalModel.Add(Tables.Combine(f[t], at.D, at.D0), attn[l].Output[t]));
            attnFlops[l] = CrosscoderStrategy.TableAttentionFlops(c, f, l) + T3Flops.Attention(c, f);
            if (c.AttnOnly) continue;
            var mt = tab.Mlp[l]!;
            var (iota2, r2) = Scales(mt.Norm, f);
            rho2[l] = r2;
            pre[l] = new Iv[T][]; e[l] = new Iv[T][]; transition[l] = new double[T]; eOut[l] = new double[T];
            var zero = new Iv[c.DMlp].Select(_ => Iv.Zero).ToArray();
            var zeroD = new Iv[c.DModel].Select(_ => Iv.Zero).ToArray();
            var actC = mt.C.Select(x => ArchIv.Act(c.Act, x)).ToArray();   // act(c), the same at every token
            for (int t = 0; t < T; t++)
            {
                var sv = Tables.Combine(f[t], mt.U, zero);
                Iv[] s;
                Iv[] tr;
                if (iota2 is null)
                {
                    s = sv;
                    pre[l][t] = IntervalModel.Add(mt.C, s);
                    tr = Tables.Combine(f[t], mt.E, mt.E0);
                }
                else
                {
                    // T3: u' = ι(Σ f U + U₀) + U_b, s = u' − c = ι Σ f U + (ι − 1) U₀ (c = U₀ + U_b), both enclosed;
                    // transition Σ f DM + ι Σ f M + (ι − 1) M₀ + e₀.
                    var io = iota2[t]; var im1 = io - Iv.Point(1);
                    pre[l][t] = sv.Select((x, k) => io * (x + mt.U0![k]) + mt.Ub![k]).ToArray();
                    s = sv.Select((x, k) => io * x + im1 * mt.U0![k]).ToArray();
                    var fm = Tables.Combine(f[t], mt.M!, zeroD);
                    tr = Tables.Combine(f[t], mt.E, mt.E0).Select((x, k) => x + io * fm[k] + im1 * mt.M0![k]).ToArray();
                }
                // E_m = act(c_m + s_m) − act(c_m) − g_m s_m (exact identity, T2/T3), enclosed.
                e[l][t] = new Iv[c.DMlp];
                for (int m = 0; m < c.DMlp; m++) e[l][t][m] = ArchIv.Act(c.Act, pre[l][t][m]) - actC[m] - (mt.G[m] ? s[m] : Iv.Zero);
                eOut[l][t] = ErrorOut(e[l][t], mt.WoutRowNorm);
                transition[l][t] = IntervalModel.NormUpper(tr);
                mlpFlops[l] += (long)f[t].Length * 2 * (c.DMlp + c.DModel) + 6L * c.DMlp + 2L * c.DModel + Flops.Norm(c.DModel) + 2L * c.DMlp + 3;
            }
            mlpFlops[l] += T3Flops.Mlp(c, f);
        }
        var (iotaF, rhoF) = Scales(tab.UnembedNorm, f);
        var diffs = new Iv[]?[T];
        for (int t = 0; t < T; t++)
            diffs[t] = seq.Labels[t] < 0 ? null : IntervalModel.Differences(
                NormTables.Apply(f[t], tab.Unembed, tab.Unembed0, iotaF is null ? Iv.Point(1) : iotaF[t], tab.UnembedB), seq.Labels[t]);
        long zFlops = f.Where((_, t) => seq.Labels[t] >= 0).Sum(ft => (long)ft.Length * 2 * c.DVocabOut) + seq.LabelledCount * (long)c.DVocabOut
                      + T3Flops.Loss(c, f, seq.Labels);
        return new TablesSequence
        {
            Labels = seq.Labels, Eps0 = eps0, L2Flops = CrosscoderStrategy.L2Flops(c, nnz, T),
            Attn = attn, Delta = delta, AttnFlops = attnFlops, Pre = pre, E = e, Transition = transition, EOut = eOut, MlpFlops = mlpFlops,
            Diffs = diffs, LogitFlops = zFlops, Tab = tab, Rho1 = rho1, Rho2 = rho2, RhoF = rhoF,
        };
    }

    /// <summary>Σ_m |E_m| ‖W_out[m]‖, rounded up.</summary>
    public static double ErrorOut(Iv[] e, double[] woutRowNorm)
    {
        double s = 0;
        for (int m = 0; m < e.Length; m++) s = Up.Add(s, Up.Mul(e[m].Mag, woutRowNorm[m]));
        return s;
    }

    /// <summary>NL: ε̃_t for the normalisation <paramref name="nt"/> (ε itself without one).</summary>
    static double[] Tilde(NormTables? nt, double[] eps, double[]? rho) =>
        nt is null ? eps : eps.Select((x, t) => nt.Tilde(x, rho![t])).ToArray();

    /// <summary>T3's perturbation of an MLP with an activation other than ReLU: Σ_m Δ_m ‖W_out[m,:]‖, Δ_m the largest
    /// change of act between the nominal pre-activation and the box widened by r_m = ε̃‖W_in[:,m]‖ (rule A enclosures).</summary>
    public static double ActPerturbation(ActKind act, Iv[] pre, double epsTilde, double[] winCol, double[] woutRow)
    {
        double p = 0;
        for (int m = 0; m < pre.Length; m++)
        {
            double r = Up.Mul(epsTilde, winCol[m]);
            var wide = ArchIv.Act(act, new Iv(Math.BitDecrement(pre[m].Lo - r), Up.Add(pre[m].Hi, r)));
            var at = ArchIv.Act(act, pre[m]);
            double delta = Math.Max(Math.Max(0, Math.BitIncrement(wide.Hi - at.Lo)), Math.Max(0, Math.BitIncrement(at.Hi - wide.Lo)));
            p = Up.Add(p, Up.Mul(delta, woutRow[m]));
        }
        return p;
    }

    /// <param name="errorOut">Optional replacement of Σ_m |E_m| ‖W_out[m]‖ at (layer, position); null keeps the prepared value.</param>
    public SequenceBound Propagate(ModelConfig c, Norms norms, double[][] trivial, Func<int, int, double?>? errorOut = null)
    {
        int T = Eps0.Length;
        var blocks = new List<(double[], long, double[][][]?)>();
        var eps = Eps0;
        for (int l = 0; l < c.NLayers; l++)
        {
            // T3: the attention reads ln1(h), so L5 runs on ε̃; the skip carries ε.
            var (pert, centres) = CrosscoderStrategy.AttentionPerturbation(c, norms, l, Attn[l], Tilde(Tab.Attn[l].Norm, eps, Rho1[l]));
            var next = new double[T];
            for (int t = 0; t < T; t++) next[t] = CrosscoderStrategy.After(c, eps[t], pert[t], Delta[l][t]);
            blocks.Add((next, AttnFlops[l] + CrosscoderStrategy.PerturbationFlops(c, T, l) + 2L * T, centres));
            eps = next;
            if (c.AttnOnly) continue;
            var et = Tilde(Tab.Mlp[l]!.Norm, eps, Rho2[l]);
            next = new double[T];
            for (int t = 0; t < T; t++)
            {
                // ReLU: L4's active-set form; another activation: the per-neuron form or its global slope times K_mlp (T3).
                double p = c.Act == ActKind.Relu ? Up.Mul(norms.ActiveLipschitz(l, Pre[l][t], et[t]), et[t])
                                                 : Math.Min(ActPerturbation(c.Act, Pre[l][t], et[t], norms.WinCol[l], norms.WoutRow[l]),
                                                            Up.Mul(Up.Mul(ArchIv.Lipschitz(c.Act), norms.KMlp[l]), et[t]));
                next[t] = CrosscoderStrategy.After(c, eps[t], p, Up.Add(Transition[l][t], errorOut?.Invoke(l, t) ?? EOut[l][t]));
            }
            blocks.Add((next, MlpFlops[l], null));
            eps = next;
        }
        var (capped, uncapped, errors) = CrosscoderStrategy.L1(Labels, t => Diffs[t]!, Tilde(Tab.UnembedNorm, eps, RhoF), norms, trivial, c);
        return new SequenceBound(Eps0, L2Flops, blocks, capped, uncapped, LogitFlops, errors);
    }
}
