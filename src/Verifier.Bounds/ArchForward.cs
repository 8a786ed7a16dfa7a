using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The model of every architecture <see cref="ModelConfig"/> accepts (spec/model.md) in scalar outward-rounded
/// interval arithmetic (R1 and the rules of proofs/R3G-generator-enclosures.md), in the order of operations of
/// <see cref="ReferenceForward"/>: h⁰ = W_E[x] (+ W_pos), per layer ln1 → attention (rotary q, k; grouped-query
/// key/value heads; local windows; the attention divisor) and ln2 → MLP (gated or not, any activation), sequential or
/// parallel; then ln_final and the unembedding. One instance is shared by all threads (it holds only the weights).
/// Used for non-basic models by brute force (BF/BFB, one exact sequence at a time) and by trivial and clustered (IP, CL:
/// boxes, attention enclosed by the hull of the attended value boxes).</summary>
public sealed class ArchForward
{
    public ModelConfig C { get; }
    readonly ModelWeights _w;
    readonly IntervalModel _m;
    readonly (Iv Cos, Iv Sin)[][]? _rot;      // [position][pair]
    readonly Iv[] _divisor;                    // per layer

    public ArchForward(ModelWeights w)
    {
        _w = w; C = w.Config; _m = new IntervalModel(w);
        if (C.Rotary)
        {
            _rot = new (Iv, Iv)[C.NCtx][];
            for (int t = 0; t < C.NCtx; t++)
            {
                _rot[t] = new (Iv, Iv)[C.RotaryDim / 2];
                for (int i = 0; i < C.RotaryDim / 2; i++) _rot[t][i] = ArchIv.Rotation(ReferenceForward.RotaryAngle(C, t, i));
            }
        }
        _divisor = Enumerable.Range(0, C.NLayers).Select(l => ArchIv.Divisor(C, l)).ToArray();
    }

    double[] W(string name) => _w[name].Data;

    /// <summary>h⁰_t = W_E[x_t] (+ W_pos[t] when the model has learned positions): <see cref="IntervalModel.Embed"/>.</summary>
    public Iv[] Embed(int token, int t) => _m.Embed(token, t);

    /// <summary>Rule N with the tensors of <paramref name="prefix"/> (ln1., ln2., ln_final.).</summary>
    public Iv[] Norm(string prefix, NormKind kind, Iv[] x) => ArchIv.Norm(x, kind, C.Eps,
        kind is NormKind.LN or NormKind.RMS ? W(prefix + "w") : null, kind == NormKind.LN ? W(prefix + "b") : null);

    /// <summary>The boxes the unembedding reads (ln_final of h^L) from boxes of h⁰. <paramref name="scores"/>: attention
    /// through the interval softmax of the scores (BF; clustered); <paramref name="hull"/>: attention enclosed by the hull
    /// of the attended value boxes (IP; clustered), intersected with the softmax combination when both.</summary>
    public Iv[][] Forward(Iv[][] h, bool scores, bool hull)
    {
        int T = h.Length;
        for (int l = 0; l < C.NLayers; l++)
        {
            var hin = h;
            var x1 = hin.Select(v => Norm($"blocks.{l}.ln1.", C.Normalization, v)).ToArray();
            var attn = Attention(l, x1, scores, hull);
            if (C.AttnOnly) h = Enumerable.Range(0, T).Select(t => IntervalModel.Add(hin[t], attn[t])).ToArray();
            else if (C.ParallelAttnMlp)
                // h + attn(ln1 h) + mlp(ln2 h), both from the block input, added as (h + attn) + mlp.
                h = Enumerable.Range(0, T).Select(t =>
                    IntervalModel.Add(IntervalModel.Add(hin[t], attn[t]), Mlp(l, Norm($"blocks.{l}.ln2.", C.Normalization, hin[t])))).ToArray();
            else
            {
                var mid = Enumerable.Range(0, T).Select(t => IntervalModel.Add(hin[t], attn[t])).ToArray();
                h = mid.Select(m => IntervalModel.Add(m, Mlp(l, Norm($"blocks.{l}.ln2.", C.Normalization, m)))).ToArray();
            }
        }
        return h.Select(v => Norm("ln_final.", C.FinalNorm, v)).ToArray();
    }

    /// <summary>Rules Q, P, W, S: attn_t = Σ_heads z_t W_O[head] + b_O, z_t over the keys C.FirstKey(l, t) ≤ s ≤ t of the
    /// head's key/value head, scores q_t·k_s / D_l through p_s = 1/Σ_u e^{σ_u − σ_s} (clipped to [0, 1]) and/or the hull
    /// of the attended value boxes.</summary>
    Iv[][] Attention(int l, Iv[][] x, bool scores, bool hull)
    {
        int T = x.Length, H = C.NHeads, G = C.KvHeads, d = C.DModel, dh = C.DHead;
        string a = $"blocks.{l}.attn.", kvp = C.NKeyValueHeads is null ? "" : "_";
        double[] wq = W(a + "W_Q"), wk = W(a + kvp + "W_K"), wv = W(a + kvp + "W_V"), wo = W(a + "W_O");   // [heads, d_model, d_head]; W_O [heads, d_head, d_model]
        double[] bq = W(a + "b_Q"), bk = W(a + kvp + "b_K"), bv = W(a + kvp + "b_V"), bo = W(a + "b_O");
        var outp = new Iv[T][];
        for (int t = 0; t < T; t++) { outp[t] = new Iv[d]; for (int i = 0; i < d; i++) outp[t][i] = Iv.Point(bo[i]); }
        var K = new Iv[G][][]; var V = new Iv[G][][];
        for (int g = 0; g < G; g++)
        {
            V[g] = new Iv[T][]; K[g] = new Iv[T][];
            for (int t = 0; t < T; t++)
            {
                V[g][t] = IntervalModel.Affine(x[t], wv, g * d * dh, d, dh, bv, g * dh);
                if (scores) K[g][t] = Rotate(IntervalModel.Affine(x[t], wk, g * d * dh, d, dh, bk, g * dh), t);
            }
        }
        var D = _divisor[l];
        bool local = C.IsLocal(l);
        for (int hd = 0; hd < H; hd++)
        {
            int g = C.KvHeadOf(hd);
            Iv[]? running = null;                     // hull of V[0..t] for a global layer (min/max are exact: same boxes)
            for (int t = 0; t < T; t++)
            {
                int first = C.FirstKey(l, t);
                Iv[]? z = null;
                if (hull && !local)
                {
                    running ??= (Iv[])V[g][0].Clone();
                    for (int e = 0; e < dh; e++) running[e] = Iv.Hull(running[e], V[g][t][e]);
                    z = (Iv[])running.Clone();
                }
                else if (hull)
                {
                    z = (Iv[])V[g][first].Clone();
                    for (int s = first + 1; s <= t; s++) for (int e = 0; e < dh; e++) z[e] = Iv.Hull(z[e], V[g][s][e]);
                }
                if (scores)
                {
                    var q = Rotate(IntervalModel.Affine(x[t], wq, hd * d * dh, d, dh, bq, hd * dh), t);
                    var sigma = new Iv[t + 1 - first];
                    for (int s = first; s <= t; s++) sigma[s - first] = IntervalModel.Dot(q, K[g][s]) / D;
                    var p = Softmax(sigma);
                    var comb = new Iv[dh];
                    for (int e = 0; e < dh; e++) { var acc = Iv.Zero; for (int s = first; s <= t; s++) acc += p[s - first] * V[g][s][e]; comb[e] = acc; }
                    if (z is null) z = comb;
                    else for (int e = 0; e < dh; e++) z[e] = new Iv(Math.Max(z[e].Lo, comb[e].Lo), Math.Min(z[e].Hi, comb[e].Hi));
                }
                var o = IntervalModel.Affine(z!, wo, hd * dh * d, dh, d, null, 0);
                for (int i = 0; i < d; i++) outp[t][i] += o[i];
            }
        }
        return outp;
    }

    /// <summary>p_s = 1 / Σ_u e^{σ_u − σ_s} clipped to [0, 1]: <see cref="IntervalModel.Softmax"/>, whose extended arithmetic
    /// (1/[m, +∞] = [0, 1/m]) keeps clustered's wide score boxes (gaps beyond 709) finite instead of refusing the bound.</summary>
    internal static Iv[] Softmax(Iv[] sigma) => IntervalModel.Softmax(sigma);

    /// <summary>Rule P in place on a query or key at position t: (x_a, x_b) ← (x_a cos − x_b sin, x_b cos + x_a sin) for each pair.</summary>
    Iv[] Rotate(Iv[] x, int t)
    {
        if (_rot is null) return x;
        for (int i = 0; i < C.RotaryDim / 2; i++)
        {
            var (cos, sin) = _rot[t][i];
            var (ia, ib) = ReferenceForward.RotaryPair(C, i);
            Iv xa = x[ia], xb = x[ib];
            x[ia] = xa * cos - xb * sin;
            x[ib] = xb * cos + xa * sin;
        }
        return x;
    }

    /// <summary>Rules A, G: act(x W_in + b_in) W_out + b_out, or (act(x W_gate) ⊙ (x W_in) + b_in) W_out + b_out.</summary>
    public Iv[] Mlp(int l, Iv[] x)
    {
        int d = C.DModel, m = C.DMlp;
        string p = $"blocks.{l}.mlp.";
        Iv[] post;
        if (!C.GatedMlp)
        {
            post = IntervalModel.Affine(x, W(p + "W_in"), 0, d, m, W(p + "b_in"), 0);
            for (int j = 0; j < m; j++) post[j] = ArchIv.Act(C.Act, post[j]);
        }
        else
        {
            var gate = IntervalModel.Affine(x, W(p + "W_gate"), 0, d, m, null, 0);
            var lin = IntervalModel.Affine(x, W(p + "W_in"), 0, d, m, null, 0);
            var bin = W(p + "b_in");
            post = new Iv[m];
            for (int j = 0; j < m; j++) post[j] = ArchIv.Act(C.Act, gate[j]) * lin[j] + bin[j];
        }
        return IntervalModel.Affine(post, W(p + "W_out"), 0, m, d, W(p + "b_out"), 0);
    }

    /// <summary>One sequence from its exact tokens (BF): the upper end of the enclosure of Σ_t CE(logits_t, y_t) over its
    /// labelled positions (no slack), and the positions whose label logit is not certified to beat every other (ACC).</summary>
    public (double LossSum, int Errors) Sequence(Sequence seq)
    {
        int T = seq.Tokens.Length;
        var h = Enumerable.Range(0, T).Select(t => Embed(seq.Tokens[t], t)).ToArray();
        var y = Forward(h, scores: true, hull: false);
        var sum = Iv.Zero;
        int errors = 0;
        for (int t = 0; t < T; t++)
        {
            int label = seq.Labels[t];
            if (label < 0) continue;
            var diffs = IntervalModel.Differences(_m.Logits(y[t]), label);
            sum += IntervalModel.CrossEntropyFromDifferences(diffs);
            if (!(IntervalModel.MaxUpper(diffs) < 0)) errors++;
        }
        return (sum.Hi, errors);
    }
}
