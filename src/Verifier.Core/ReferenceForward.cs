namespace Verifier.Core;

/// <summary>The model of BOUNDS.md §1 in plain C# float64, one sequence at a time: the ground truth that the
/// TorchSharp model is tested against, and readable next to the brief line by line.</summary>
public static class ReferenceForward
{
    /// <summary>Residual stream at each site (ModelConfig.SiteNames order), each [T, d_model], and logits [T, d_vocab_out].</summary>
    public sealed record Result(double[][,] Sites, double[,] Logits);

    /// <param name="mlpPre">Optional hook (layer, position, pre-activation) → the pre-activation to use instead, for
    /// ablations of the MLP's input (interaction suppression).</param>
    public static Result Run(ModelWeights w, int[] tokens, Func<int, int, double[], double[]>? mlpPre = null)
    {
        var c = w.Config;
        int T = tokens.Length, d = c.DModel;
        if (T > c.NCtx) throw new ArgumentException($"sequence of {T} tokens exceeds n_ctx {c.NCtx}");
        var WE = w["embed.W_E"].Data; var Wpos = w["pos_embed.W_pos"].Data;
        var h = new double[T, d];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++) h[t, i] = WE[tokens[t] * d + i] + Wpos[t * d + i];   // h⁰_t = W_E[x_t] + W_pos[t]
        var sites = new List<double[,]> { (double[,])h.Clone() };

        for (int l = 0; l < c.NLayers; l++)
        {
            var attn = Attention(w, l, h);
            for (int t = 0; t < T; t++) for (int i = 0; i < d; i++) h[t, i] += attn[t, i];   // h^{l,mid} = h + attn
            if (!c.AttnOnly)
            {
                sites.Add((double[,])h.Clone());
                var mlp = Mlp(w, l, h, mlpPre);
                for (int t = 0; t < T; t++) for (int i = 0; i < d; i++) h[t, i] += mlp[t, i]; // h^l = h^{l,mid} + MLP
            }
            sites.Add((double[,])h.Clone());
        }

        int V = c.DVocabOut;
        var WU = w["unembed.W_U"].Data; var bU = w["unembed.b_U"].Data;
        var logits = new double[T, V];
        for (int t = 0; t < T; t++)
            for (int v = 0; v < V; v++)
            {
                double s = bU[v];
                for (int i = 0; i < d; i++) s += h[t, i] * WU[i * V + v];
                logits[t, v] = s;
            }
        return new Result(sites.ToArray(), logits);
    }

    static double[,] Attention(ModelWeights w, int l, double[,] h)
    {
        var c = w.Config;
        int T = h.GetLength(0), d = c.DModel, H = c.NHeads, dh = c.DHead;
        string a = $"blocks.{l}.attn.";
        var WQ = w[a + "W_Q"].Data; var WK = w[a + "W_K"].Data; var WV = w[a + "W_V"].Data; var WO = w[a + "W_O"].Data;
        var bQ = w[a + "b_Q"].Data; var bK = w[a + "b_K"].Data; var bV = w[a + "b_V"].Data; var bO = w[a + "b_O"].Data;
        var outp = new double[T, d];
        for (int t = 0; t < T; t++) for (int i = 0; i < d; i++) outp[t, i] = bO[i];
        double scale = Math.Sqrt(dh);
        for (int hd = 0; hd < H; hd++)
        {
            double[,] q = Project(h, WQ, bQ, hd, d, dh), k = Project(h, WK, bK, hd, d, dh), v = Project(h, WV, bV, hd, d, dh);
            for (int t = 0; t < T; t++)
            {
                var scores = new double[t + 1];                       // σ_ts = q_t·k_s/√d_head, s ≤ t
                for (int s = 0; s <= t; s++)
                {
                    double dot = 0;
                    for (int e = 0; e < dh; e++) dot += q[t, e] * k[s, e];
                    scores[s] = dot / scale;
                }
                double max = scores.Max(), sum = 0;
                for (int s = 0; s <= t; s++) { scores[s] = Math.Exp(scores[s] - max); sum += scores[s]; }
                var z = new double[dh];                               // z_t = Σ_s p_ts v_s
                for (int s = 0; s <= t; s++)
                    for (int e = 0; e < dh; e++) z[e] += scores[s] / sum * v[s, e];
                for (int i = 0; i < d; i++)                           // attn_t += z_t W_O[head]
                {
                    double acc = 0;
                    for (int e = 0; e < dh; e++) acc += z[e] * WO[(hd * dh + e) * d + i];
                    outp[t, i] += acc;
                }
            }
        }
        return outp;
    }

    static double[,] Project(double[,] h, double[] W, double[] b, int head, int d, int dh)
    {
        int T = h.GetLength(0);
        var r = new double[T, dh];
        for (int t = 0; t < T; t++)
            for (int e = 0; e < dh; e++)
            {
                double s = b[head * dh + e];
                for (int i = 0; i < d; i++) s += h[t, i] * W[(head * d + i) * dh + e];
                r[t, e] = s;
            }
        return r;
    }

    static double[,] Mlp(ModelWeights w, int l, double[,] h, Func<int, int, double[], double[]>? hook)
    {
        var c = w.Config;
        int T = h.GetLength(0), d = c.DModel, m = c.DMlp;
        string p = $"blocks.{l}.mlp.";
        var Win = w[p + "W_in"].Data; var bin = w[p + "b_in"].Data; var Wout = w[p + "W_out"].Data; var bout = w[p + "b_out"].Data;
        var r = new double[T, d];
        var act = new double[m];
        for (int t = 0; t < T; t++)
        {
            for (int j = 0; j < m; j++)
            {
                double s = bin[j];
                for (int i = 0; i < d; i++) s += h[t, i] * Win[i * m + j];
                act[j] = s;                                               // h W_in + b_in
            }
            if (hook is not null) act = hook(l, t, act);
            for (int j = 0; j < m; j++) act[j] = Math.Max(0, act[j]);     // ReLU
            for (int i = 0; i < d; i++)
            {
                double s = bout[i];
                for (int j = 0; j < m; j++) s += act[j] * Wout[j * d + i];
                r[t, i] = s;
            }
        }
        return r;
    }

    /// <summary>Cross-entropy −log softmax(z)_y, computed stably.</summary>
    public static double CrossEntropy(double[,] logits, int t, int y)
    {
        int V = logits.GetLength(1);
        double max = double.NegativeInfinity;
        for (int v = 0; v < V; v++) max = Math.Max(max, logits[t, v]);
        double sum = 0;
        for (int v = 0; v < V; v++) sum += Math.Exp(logits[t, v] - max);
        return max + Math.Log(sum) - logits[t, y];
    }

    /// <summary>Mean cross-entropy and accuracy over every labelled position of the dataset.</summary>
    public static (double Loss, double Accuracy, long Positions) Evaluate(ModelWeights w, TokenDataset data) => Evaluate(w, data, null);

    /// <summary>As <see cref="Evaluate(ModelWeights, TokenDataset)"/>, with a hook on every MLP pre-activation
    /// (sequence index, layer, position, pre) → pre to use.</summary>
    public static (double Loss, double Accuracy, long Positions) Evaluate(ModelWeights w, TokenDataset data,
        Func<int, int, int, double[], double[]>? mlpPre)
    {
        double total = 0; long n = 0, correct = 0;
        for (int q = 0; q < data.Count; q++)
        {
            var s = data.Sequences[q];
            int seq = q;
            var logits = Run(w, s.Tokens, mlpPre is null ? null : (l, t, pre) => mlpPre(seq, l, t, pre)).Logits;
            for (int t = 0; t < s.Tokens.Length; t++)
            {
                int y = s.Labels[t];
                if (y < 0) continue;
                double ce = CrossEntropy(logits, t, y);
                if (!double.IsFinite(ce)) throw Overflow(w, q, t, logits, ce);
                total += ce;
                n++;
                int arg = 0;
                for (int v = 1; v < logits.GetLength(1); v++) if (logits[t, v] > logits[t, arg]) arg = v;
                if (arg == y) correct++;
            }
        }
        return (total / n, (double)correct / n, n);
    }

    /// <summary>The error for a position whose float64 cross-entropy is not finite: the weights are finite (checked
    /// at load), so a product or sum overflowed on the way to the logits.</summary>
    public static NumericException Overflow(ModelWeights w, int sequence, int position, double[,] logits, double ce)
    {
        double worst = 0;
        for (int v = 0; v < logits.GetLength(1); v++)
            if (!double.IsFinite(logits[position, v]) || Math.Abs(logits[position, v]) > Math.Abs(worst)) { worst = logits[position, v]; if (!double.IsFinite(worst)) break; }
        string what = double.IsFinite(worst) ? $"the cross-entropy is {ce} (largest |logit| {Math.Abs(worst):G3})" : $"a logit is {worst}";
        return new NumericException(w.Source, $"sequence {sequence + 1}, position {position}",
            $"the float64 forward pass overflows: {what}; the weights are finite but too large for a finite loss or bound");
    }
}
