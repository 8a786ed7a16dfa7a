using System.Text.Json;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The norms an N1 step claims, as later steps use them.</summary>
public sealed record ClaimedNorms(double[][] WQ, double[][] WK, double[][] WV, double[][] WO, double[] KMlp, double[] UnembedDiff, double[][] WinCol, double[][] WoutRow);

/// <summary>One method per lemma of proofs/: parse → recompute in interval arithmetic → compare → record.</summary>
public sealed partial class TranscriptChecker
{
    ModelConfig C => _w.Config;
    IReadOnlyList<string> Sites => C.SiteNames();
    int CcSite(int site) => _cc is null ? -1 : _cc.Config.Sites.ToList().IndexOf(Sites[site]);

    Sequence Seq(Step s)
    {
        int q = s.ScopeInt("sequence");
        if (q < 0 || q >= _data.Count) Fail(s, $"scope.sequence {q} is outside the dataset's {_data.Count} sequences");
        return _data.Sequences[q];
    }

    // ---- BF ------------------------------------------------------------------------------------------------
    Info BruteForce(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: BF uses none");
        var seq = Seq(s);
        var (sum, wrong) = C.IsBasic ? BasicSequence(seq) : Arch.SequenceInterval(seq);   // R3: every other architecture (LemmasArch.cs)
        double claim = s.Number("loss_sum");
        Certify(s, $"loss_sum of sequence {s.ScopeInt("sequence")}", claim, sum.Hi);
        var errors = Errors(s, wrong, seq.LabelledCount, $"of sequence {s.ScopeInt("sequence")}");
        long own = Costs.BruteForce(C, seq.Labels);
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = s.ScopeInt("sequence"), Scalar = claim, Errors = errors };
    }

    /// <summary>The basic model's forward pass over one sequence (<see cref="Forward"/>): its loss sum and the labelled
    /// positions it does not certify correctly classified.</summary>
    (R Sum, int Wrong) BasicSequence(Sequence seq)
    {
        var h = seq.Tokens.Select((x, t) => _f.Embed(x, t)).ToArray();
        for (int l = 0; l < C.NLayers; l++)
        {
            var a = _f.Attention(l, h).Out;
            h = h.Select((x, t) => Forward.Plus(x, a[t])).ToArray();
            if (!C.AttnOnly) h = h.Select(x => Forward.Plus(x, _f.Mlp(l, x))).ToArray();
        }
        var sum = R.Zero;
        int wrong = 0;
        for (int t = 0; t < seq.Tokens.Length; t++)
        {
            if (seq.Labels[t] < 0) continue;
            var d = Forward.Diffs(_f.Logits(h[t]), seq.Labels[t]);
            sum = sum + Forward.CeFromDiffs(d);
            if (!Forward.Certain(d)) wrong++;
        }
        return (sum, wrong);
    }

    // ---- BFB -----------------------------------------------------------------------------------------------
    /// <summary>Brute force over the block of sequences [first, end) (proofs/BF-brute-force.md, BFB): each sequence's
    /// forward pass in the checker's midpoint–radius kernel (R2, <see cref="BlockForward"/>, the last layer at the labelled
    /// positions only) on every core, ranges of sequences per task with one set of buffers per worker; the bounds are
    /// summed in sequence order, so the certified values do not depend on scheduling.</summary>
    Info BruteForceBlock(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: BFB uses none");
        int first = s.ScopeInt("first"), end = s.ScopeInt("end");
        if (first < 0 || end <= first || end > _data.Count) Fail(s, $"scope: the block [{first}, {end}) is not a non-empty range of the dataset's {_data.Count} sequences");
        if (!C.IsBasic) return BruteForceBlockArch(s, first, end);   // R3: every other architecture (LemmasArch.cs)
        _block ??= new BlockForward(_w);
        var loss = new double[end - first]; var wrong = new int[end - first];
        var seqs = _data.Sequences;
        // Contiguous ranges of sequences per task, one set of buffers per worker; each result lands in its own slot.
        var block = _block;
        OnWorkers(() => Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(first, end, Math.Max(16, (end - first) / (4 * Environment.ProcessorCount))),
            () => new BlockForward.Work(C),
            (range, _, work) =>
            {
                for (int i = range.Item1; i < range.Item2; i++) (loss[i - first], wrong[i - first]) = block.Sequence(seqs[i], work);
                return work;
            }, _ => { }));
        return CertifyBlock(s, first, end, loss, wrong);
    }

    /// <summary>Runs a parallel loop; a <see cref="CheckFailure"/> thrown on a worker is rethrown as itself (not wrapped in an
    /// AggregateException), so it rejects the step like one thrown on the checker's own thread.</summary>
    static void OnWorkers(Action loop)
    {
        try { loop(); }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is CheckFailure) is { } failure)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>BFB's comparison, whatever forward pass gave the per-sequence upper ends: their sum in index order against
    /// the claimed loss_sum, the uncertified positions against the claimed errors, and the block's cost.</summary>
    Info CertifyBlock(Step s, int first, int end, double[] loss, int[] wrong)
    {
        var seqs = _data.Sequences;
        double sum = 0; long errors = 0, own = 0, labelled = 0;
        for (int i = first; i < end; i++)
        {
            sum = U.Add(sum, loss[i - first]); errors += wrong[i - first];
            own += Costs.BruteForce(C, seqs[i].Labels);
            labelled += seqs[i].LabelledCount;
        }
        double claim = s.Number("loss_sum");
        Certify(s, $"loss_sum of sequences [{first}, {end})", claim, sum);
        var claimedErrors = Errors(s, errors, labelled, $"of sequences [{first}, {end})");
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = first, End = end, Scalar = claim, Errors = claimedErrors };
    }

    BlockForward? _block;

    // ---- MEAN ----------------------------------------------------------------------------------------------
    /// <summary>Coverage is tracked as ranges of sequence indices (a BFB block is one range), so a MEAN over millions
    /// of sequences in blocks needs memory for its inputs only.</summary>
    Info Mean(Step s)
    {
        var ranges = new List<(int First, int End, int Step)>();
        double sum = 0;
        long errors = 0;
        bool allErrors = true;
        foreach (int i in s.Inputs)
        {
            var info = _steps[i];
            switch (info.Lemma)
            {
                case "BF" or "L1" or "CC": ranges.Add((info.Sequence, info.Sequence + 1, i)); break;
                case "BFB": ranges.Add((info.Sequence, info.End, i)); break;
                case "CLMEMBERS" or "SHARD": foreach (int q in info.Members!) ranges.Add((q, q + 1, i)); break;
                default: throw new Rejection(s.Id, s.Lemma, $"inputs: step {i} is {info.Lemma}; MEAN sums BF, BFB, L1, CC, CLMEMBERS or SHARD steps");
            }
            sum = U.Add(sum, info.Scalar);
            // A claimed count bounds a whole number of positions from above, so its floor does too.
            if (info.Errors is { } e) errors += (long)Math.Floor(e); else allErrors = false;
        }
        ranges.Sort((a, b) => a.First != b.First ? a.First.CompareTo(b.First) : a.End.CompareTo(b.End));
        int next = 0;
        foreach (var (first, end, _) in ranges)
        {
            if (first < next) Fail(s, $"inputs: sequence {first} is counted twice");
            if (first > next) Fail(s, $"inputs: sequence {next} is not bounded by any input");
            next = end;
        }
        if (next < _data.Count) Fail(s, $"inputs: sequence {next} is not bounded by any input");
        long positions = s.ScopeLong("positions");
        if (positions != _data.LabelledPositions) Fail(s, $"scope.positions {positions} ≠ the dataset's {_data.LabelledPositions} labelled positions");
        double b0 = s.Number("b0");
        Certify(s, "b0", b0, U.Div(sum, positions));
        bool claimsErrors = s.Claim.TryGetProperty("errors", out _);
        if (claimsErrors && !allErrors) Fail(s, "claim: errors needs every input to claim errors");
        _finalErrors = claimsErrors ? Errors(s, errors, positions, "over the dataset") : null;
        Cost(s, s.Inputs.Length + 1, true);
        _finalMeanStep = s.Id; _finalB0 = b0; _finalSum = sum;
        return new Info { Lemma = s.Lemma, Scalar = b0 };
    }

    // ---- IP, IPMEAN --------------------------------------------------------------------------------------------
    Info TrivialTable(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: IP uses none");
        int t = s.ScopeInt("position");
        if (t < 0 || t >= C.NCtx) Fail(s, $"scope.position {t} is outside [0, n_ctx = {C.NCtx})");
        Once(s, $"IP position {t}");
        var we = _w["embed.W_E"].Data; var wp = C.HasPosEmbed ? _w["pos_embed.W_pos"].Data : null; int d = C.DModel;
        var box = new R[t + 1][];
        for (int u = 0; u <= t; u++)
            box[u] = Enumerable.Range(0, d).Select(i =>
            {
                double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                for (int x = 0; x < C.DVocab; x++) { lo = Math.Min(lo, we[x * d + i]); hi = Math.Max(hi, we[x * d + i]); }
                return wp is null ? new R(lo, hi) : new R(lo, hi) + R.Of(wp[u * d + i]);
            }).ToArray();
        var h = C.IsBasic ? _f.Boxes(box, scores: false)[t] : Arch.Final(Arch.Boxes(box, scores: false)[t]);   // R3: ln_final before the unembedding
        var claim = s.Vector("ce_by_label");
        if (claim.Length != C.DVocabOut) Fail(s, $"ce_by_label has {claim.Length} entries, expected d_vocab_out = {C.DVocabOut}");
        var certain = new bool[claim.Length];
        for (int y = 0; y < claim.Length; y++)
        {
            var diffs = _f.LogitDiffsBox(h, y);
            Certify(s, $"ce_by_label[{y}] at position {t}", claim[y], Forward.CeFromDiffs(diffs).Hi);
            certain[y] = Forward.Certain(diffs);
        }
        long own = Costs.TrivialTable(C, t);
        Cost(s, own, false); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Site = t, Vector = claim, Certain = certain };
    }

    Info TrivialMean(Step s)
    {
        var table = new double[C.NCtx][];
        var certain = new bool[C.NCtx][];
        foreach (int i in s.Inputs)
        {
            var info = _steps[i];
            if (info.Lemma != "IP") Fail(s, $"inputs: step {i} is {info.Lemma}, expected IP");
            if (table[info.Site] is not null) Fail(s, $"inputs: two IP steps for position {info.Site}");
            table[info.Site] = info.Vector!; certain[info.Site] = info.Certain!;
        }
        double sum = 0;
        long wrong = 0;
        foreach (var seq in _data.Sequences)
            for (int t = 0; t < seq.Tokens.Length; t++)
            {
                if (seq.Labels[t] < 0) continue;
                if (table[t] is null) Fail(s, $"inputs: no IP step for position {t}");
                sum = U.Add(sum, table[t][seq.Labels[t]]);
                if (!certain[t][seq.Labels[t]]) wrong++;
            }
        long positions = s.ScopeLong("positions");
        if (positions != _data.LabelledPositions) Fail(s, $"scope.positions {positions} ≠ the dataset's {_data.LabelledPositions}");
        double b0 = s.Number("b0");
        Certify(s, "b0", b0, U.Div(sum, positions));
        _finalErrors = Errors(s, wrong, positions, "over the dataset");
        Cost(s, positions + 1, true);
        _finalMeanStep = s.Id; _finalB0 = b0; _finalSum = sum;
        return new Info { Lemma = s.Lemma, Scalar = b0 };
    }

    // ---- N1 ----------------------------------------------------------------------------------------------------
    static double OpNorm(double[] a, int off, int rows, int cols)
    {
        double fro = 0, maxRow = 0;
        var col = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            double row = 0;
            for (int c = 0; c < cols; c++)
            {
                double x = Math.Abs(a[off + r * cols + c]);
                fro = U.Add(fro, U.Mul(x, x)); row = U.Add(row, x); col[c] = U.Add(col[c], x);
            }
            maxRow = Math.Max(maxRow, row);
        }
        return Math.Min(U.Sqrt(fro), U.Sqrt(U.Mul(maxRow, cols == 0 ? 0 : col.Max())));
    }

    Info NormsStep(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: N1 uses none");
        Once(s, "N1");
        int L = C.NLayers, H = C.NHeads, d = C.DModel, dh = C.DHead, m = C.DMlp, V = C.DVocabOut;
        var where = $"step {s.Id} (N1) claim";
        double[][] Heads(string name, int rows, int cols)
        {
            var claimed = Step.Mat(s.Claim, name, where);
            if (claimed.Length != L || claimed.Any(r => r.Length != H)) Fail(s, $"{name} must be [n_layers][n_heads]");
            for (int l = 0; l < L; l++)
                for (int h = 0; h < H; h++)
                    Certify(s, $"‖{name}‖ layer {l} head {h}", claimed[l][h], OpNorm(_w[$"blocks.{l}.attn.{name}"].Data, h * rows * cols, rows, cols));
            return claimed;
        }
        var wq = Heads("W_Q", d, dh); var wk = Heads("W_K", d, dh); var wv = Heads("W_V", d, dh); var wo = Heads("W_O", dh, d);
        var k = s.Vector("K_mlp");
        var winCol = Step.Mat(s.Claim, "W_in_col", where); var woutRow = Step.Mat(s.Claim, "W_out_row", where);
        if (k.Length != L || winCol.Length != L || woutRow.Length != L) Fail(s, "K_mlp, W_in_col and W_out_row need one entry per layer");
        for (int l = 0; l < L && !C.AttnOnly; l++)
        {
            var win = _w[$"blocks.{l}.mlp.W_in"].Data; var wout = _w[$"blocks.{l}.mlp.W_out"].Data;
            if (winCol[l].Length != m || woutRow[l].Length != m) Fail(s, $"W_in_col/W_out_row layer {l} need d_mlp = {m} entries");
            double perNeuron = 0;
            for (int j = 0; j < m; j++)
            {
                double a = U.Norm(Enumerable.Range(0, d).Select(i => win[i * m + j]));
                double b = U.Norm(Enumerable.Range(0, d).Select(i => wout[j * d + i]));
                Certify(s, $"‖W_in[:, {j}]‖ layer {l}", winCol[l][j], a);
                Certify(s, $"‖W_out[{j}, :]‖ layer {l}", woutRow[l][j], b);
                perNeuron = U.Add(perNeuron, U.Mul(a, b));
            }
            Certify(s, $"K_mlp layer {l}", k[l], Math.Min(U.Mul(OpNorm(win, 0, d, m), OpNorm(wout, 0, m, d)), perNeuron));
        }
        var ud = s.Vector("unembed_diff");
        if (ud.Length != V) Fail(s, $"unembed_diff needs d_vocab_out = {V} entries");
        var wu = _w["unembed.W_U"].Data;
        for (int y = 0; y < V; y++)
        {
            double best = 0;
            for (int i = 0; i < V; i++)
            {
                if (i == y) continue;
                double acc = 0;
                for (int j = 0; j < d; j++) { var diff = R.Of(wu[j * V + i]) - R.Of(wu[j * V + y]); acc = U.Add(acc, U.Mul(diff.Mag, diff.Mag)); }
                best = Math.Max(best, U.Sqrt(acc));
            }
            Certify(s, $"unembed_diff[{y}]", ud[y], best);
        }
        long own = Costs.Norms(C);
        Cost(s, own, false); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Norms = new ClaimedNorms(wq, wk, wv, wo, k, ud, winCol, woutRow) };
    }

    // ---- L2 (advice) ---------------------------------------------------------------------------------------------
    (int Index, double Value)[][] Features(Step s, int T)
    {
        var f = s.DataField("features");
        if (f.ValueKind != JsonValueKind.Array || f.GetArrayLength() != T) Fail(s, $"data.features needs one list per token ({T})");
        int n = _cc!.Config.Width;
        return f.EnumerateArray().Select((tok, t) =>
        {
            if (tok.ValueKind != JsonValueKind.Array) throw new Rejection(s.Id, s.Lemma, $"data.features[{t}] must be a list");
            var list = tok.EnumerateArray().Select(p =>
            {
                if (p.ValueKind != JsonValueKind.Array || p.GetArrayLength() != 2 || p[0].ValueKind != JsonValueKind.Number || !p[0].TryGetInt32(out int i)
                    || i < 0 || i >= n || p[1].ValueKind != JsonValueKind.Number || !p[1].TryGetDouble(out double v) || !double.IsFinite(v))
                    throw new Rejection(s.Id, s.Lemma, $"data.features[{t}]: each entry must be [index in [0, {n}), finite value]");
                return (i, v);
            }).ToArray();
            if (list.Select(x => x.i).Distinct().Count() != list.Length) throw new Rejection(s.Id, s.Lemma, $"data.features[{t}] names a feature twice");
            return list;
        }).ToArray();
    }

    R[][] Decode((int Index, double Value)[][] f, int ccSite)
    {
        var cc = _cc!; int S = cc.Config.Sites.Count, d = cc.Config.DModel;
        var dec = cc["W_dec"].Data; var b = cc["b_dec"].Data;
        return f.Select(ft =>
        {
            var a = Enumerable.Range(0, d).Select(i => R.Of(b[ccSite * d + i])).ToArray();
            foreach (var (j, v) in ft) for (int i = 0; i < d; i++) a[i] = a[i] + dec[(j * S + ccSite) * d + i] * R.Of(v);
            return a;
        }).ToArray();
    }

    static double AdviceBits(int n, int nnz)
    {
        double lg = 0;
        for (int i = 0; i < nnz; i++) lg += Math.Log2(n - i) - Math.Log2(i + 1);
        return lg + 64.0 * nnz;
    }

    Info BaseCase(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: L2 uses none");
        var seq = Seq(s);
        int q0 = s.ScopeInt("sequence");
        if (!_chainRoot.TryAdd(q0, s.Id)) Fail(s, $"sequence {q0} already has its L2 step (step {_chainRoot[q0]}): one ε chain, with one advice, per sequence");
        int T = seq.Tokens.Length;
        if (s.ScopeStr("site") != Sites[0]) Fail(s, $"scope.site must be {Sites[0]}");
        var f = Features(s, T);
        foreach (var ft in f) { _adviceBits += AdviceBits(_cc!.Config.Width, ft.Length); foreach (var (i, _) in ft) _featuresSeen.Add(i); }
        var embed = seq.Tokens.Select((x, t) => _f.Embed(x, t)).ToArray();
        int cs = CcSite(0);
        var nominal = cs >= 0 ? Decode(f, cs) : embed;
        var eps = s.Vector("eps");
        if (eps.Length != T) Fail(s, $"eps needs {T} entries");
        for (int t = 0; t < T; t++) Certify(s, $"ε⁰ at position {t}", eps[t], cs >= 0 ? U.Norm(Forward.Minus(embed[t], nominal[t])) : 0);
        long nnz = f.Sum(x => (long)x.Length);
        long own = cs >= 0 ? nnz * 2 * C.DModel + T * (3L * C.DModel + Costs.Norm(C.DModel)) : 0;
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = q0, Site = 0, Root = s.Id, Vector = eps, Features = f, Nominal = _strategy == "crosscoder-exhaustive" ? nominal : null };
    }

    /// <summary>The previous ε step of the same sequence, at the site before this one.</summary>
    (Info Prev, Info Advice, ClaimedNorms Norms) Chain(Step s, string block, params string[] prevLemmas)
    {
        bool tables = _strategy == "crosscoder-tables";
        if (s.Inputs.Length != (tables ? 4 : 3)) Fail(s, $"inputs: expected [previous ε, advice, N1{(tables ? ", tables" : "")}]");
        var prev = Input(s, 0, prevLemmas);
        var advice = Input(s, 1, "L2");
        var norms = Input(s, 2, "N1").Norms!;
        if (tables) Input(s, 3, "T1-table");
        int q = s.ScopeInt("sequence");
        if (prev.Sequence != q || advice.Sequence != q) Fail(s, "inputs: the previous ε and the advice must be of this step's sequence");
        if (s.Inputs[1] != prev.Root) Fail(s, $"inputs: the advice must be step {prev.Root}, the L2 step that started this ε chain, not step {s.Inputs[1]}");
        if (advice.Features is null) Fail(s, $"inputs: the advice of step {s.Inputs[1]} was already closed by its sequence's L1 step");
        if (prev.Consumed) Fail(s, $"inputs: step {s.Inputs[0]}'s ε was already carried forward by another step");
        prev.Consumed = true;
        if (prev.Site + 1 >= Sites.Count || s.ScopeStr("site") != Sites[prev.Site + 1]) Fail(s, $"scope.site must be {(prev.Site + 1 < Sites.Count ? Sites[prev.Site + 1] : "none: the previous step is at the last site")}");
        if (s.ScopeStr("block") != block) Fail(s, $"scope.block must be {block}");
        int layer = C.AttnOnly ? prev.Site : prev.Site / 2;
        if (s.ScopeInt("layer") != layer) Fail(s, $"scope.layer must be {layer}");
        return (prev, advice, norms);
    }

    // ---- L5 / T1 (attention) --------------------------------------------------------------------------------------
    Info AttentionStep(Step s)
    {
        bool tables = _strategy == "crosscoder-tables";
        if (tables != (s.Lemma == "T1")) Fail(s, $"attention steps of {_strategy} use lemma {(tables ? "T1" : "L5")}");
        var (prev, advice, norms) = Chain(s, "attn", "L2", "L4", "T2", "L5", "T1");
        if (!C.AttnOnly && prev.Site % 2 != 0) Fail(s, "an attention step must start at h⁰ or a resid_post site");
        int l = s.ScopeInt("layer"), site = prev.Site + 1;
        var f = advice.Features!;
        int T = f.Length;
        var eps = prev.Vector!;
        Forward.Attn tr;
        var delta = new double[T];
        R[][]? nominal = null;
        long own;
        long nnz = f.Sum(x => (long)x.Length);
        var epsIn = eps;   // T3: what the attention reads is ln1(h): L5 runs on NL's ε̃, the skip carries ε
        if (tables)
        {
            var at = _tables!.Attn[l];
            R[]? iota = null;
            if (at.Norm is { } nt)
            {
                var sc = f.Select(x => nt.Scale(x)).ToArray();
                iota = sc.Select(x => x.Iota).ToArray();
                epsIn = eps.Select((e, t) => nt.Tilde(e, sc[t].Rho)).ToArray();
            }
            tr = TableAttention(at, f, iota, l);
            for (int t = 0; t < T; t++) delta[t] = U.Norm(Forward.Plus(Combine(f[t], at.D, at.D0), tr.Out[t]));
            own = Costs.TableAttention(C, f, l) + T3Costs.Attention(C, f);
        }
        else
        {
            tr = _f.Attention(l, prev.Nominal!);
            var next = prev.Nominal!.Select((x, t) => Forward.Plus(x, tr.Out[t])).ToArray();
            int cs = CcSite(site);
            nominal = cs >= 0 ? Decode(f, cs) : next;
            if (cs >= 0) for (int t = 0; t < T; t++) delta[t] = U.Norm(Forward.Minus(next[t], nominal[t]));
            own = Costs.Attention(C, T) + T * (long)C.DModel + (cs >= 0 ? nnz * 2 * C.DModel + T * (2L * C.DModel + Costs.Norm(C.DModel)) : 0);
        }
        prev.Nominal = null; prev.Vector = null;
        var centres = s.DataField("centres");
        var pert = Perturbation(s, l, tr, epsIn, norms, centres);
        var claim = s.Vector("eps");
        if (claim.Length != T) Fail(s, $"eps needs {T} entries");
        for (int t = 0; t < T; t++) Certify(s, $"ε at {Sites[site]}, position {t}", claim[t], U.Add(U.Add(eps[t], pert[t]), delta[t]));
        own += Costs.Perturbation(C, T, l) + 2L * T;
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = prev.Sequence, Site = site, Root = prev.Root, Vector = claim, Nominal = nominal };
    }

    /// <summary>L5 with the centres the step records.</summary>
    double[] Perturbation(Step s, int l, Forward.Attn tr, double[] eps, ClaimedNorms n, JsonElement centres)
    {
        int T = eps.Length, dh = C.DHead;
        if (centres.ValueKind != JsonValueKind.Array || centres.GetArrayLength() != C.NHeads) Fail(s, "data.centres needs one entry per head");
        // 1/D_l from above: √d_head as in L5; another divisor (T3: attn_scale, use_attn_scale false, the layer factor) from R3 S.
        var (sqrtD, _, factor) = C.AttnDivisor(l);
        double inv = sqrtD && factor == 1 ? U.Div(1, Math.BitDecrement(Math.Sqrt(dh))) : U.Div(1, ArchIntervals.Divisor(C, l).Lo);
        var pert = new double[T];
        for (int h = 0; h < C.NHeads; h++)
        {
            var ch = centres[h];
            if (ch.ValueKind != JsonValueKind.Array || ch.GetArrayLength() != T) Fail(s, "data.centres needs one centre per position");
            double nq = n.WQ[l][h], nk = n.WK[l][h], nv = n.WV[l][h], no = n.WO[l][h];
            var qn = tr.Q[h].Select(U.Norm).ToArray(); var kn = tr.K[h].Select(U.Norm).ToArray();
            for (int t = 0; t < T; t++)
            {
                int first = C.FirstKey(l, t);   // T3: a local layer's window; 0 when global (L5)
                double maxEps = 0, eta = 0;
                for (int u = first; u <= t; u++)
                {
                    maxEps = Math.Max(maxEps, eps[u]);
                    eta = Math.Max(eta, U.Mul(U.Add(U.Add(U.Mul(U.Mul(nq, eps[t]), kn[u]), U.Mul(U.Mul(qn[t], nk), eps[u])), U.Mul(U.Mul(nq, nk), U.Mul(eps[t], eps[u]))), inv));
                }
                double pd = Math.Min(2.0, Math.BitIncrement(U.Exp(U.Mul(2, eta)) - 1));
                var c = ch[t];
                if (c.ValueKind != JsonValueKind.Array || c.GetArrayLength() != dh) Fail(s, $"data.centres[{h}][{t}] needs d_head = {dh} numbers");
                var cv = c.EnumerateArray().Select(x => x.TryGetDouble(out double v) && double.IsFinite(v) ? R.Of(v) : throw new Rejection(s.Id, s.Lemma, "centres must be finite numbers")).ToArray();
                double r = 0;
                for (int u = first; u <= t; u++) r = Math.Max(r, U.Norm(Forward.Minus(tr.V[h][u], cv)));
                pert[t] = U.Add(pert[t], U.Mul(no, U.Add(U.Mul(pd, r), U.Mul(nv, maxEps))));
            }
        }
        return pert;
    }

    // ---- L4 / T2 (MLP) ------------------------------------------------------------------------------------------------
    Info MlpStep(Step s)
    {
        bool tables = _strategy == "crosscoder-tables";
        if (tables != (s.Lemma == "T2")) Fail(s, $"MLP steps of {_strategy} use lemma {(tables ? "T2" : "L4")}");
        if (C.AttnOnly) Fail(s, "the model has no MLP");
        var (prev, advice, norms) = Chain(s, "mlp", "L5", "T1");
        int l = s.ScopeInt("layer"), site = prev.Site + 1;
        var f = advice.Features!;
        int T = f.Length;
        var eps = prev.Vector!;
        var claim = s.Vector("eps");
        if (claim.Length != T) Fail(s, $"eps needs {T} entries");
        R[][]? nominal = null;
        long own = 0;
        double K(double e, R[] pre)
        {
            double k = 0;
            for (int m = 0; m < pre.Length; m++)
                if (U.Add(pre[m].Hi, U.Mul(e, norms.WinCol[l][m])) > 0) k = U.Add(k, U.Mul(norms.WinCol[l][m], norms.WoutRow[l][m]));
            return Math.Min(k, norms.KMlp[l]);
        }
        // L4 for ReLU: K·ε on the ball; T3 for another activation: Σ_m Δ_m ‖W_out[m,:]‖ over the widened pre-activation boxes
        // (act(pre) given: the E term below reads it too).
        double Pert(double e, R[] pre, R[] actPre)
        {
            if (C.Act == ActKind.Relu) return U.Mul(K(e, pre), e);
            double p = 0;
            for (int m = 0; m < pre.Length; m++)
            {
                double r = U.Mul(e, norms.WinCol[l][m]);
                var wide = ArchIntervals.Act(C.Act, new R(Math.BitDecrement(pre[m].Lo - r), U.Add(pre[m].Hi, r)));
                var at = actPre[m];
                double dm = Math.Max(Math.Max(0, Math.BitIncrement(wide.Hi - at.Lo)), Math.Max(0, Math.BitIncrement(at.Hi - wide.Lo)));
                p = U.Add(p, U.Mul(dm, norms.WoutRow[l][m]));
            }
            return Math.Min(p, U.Mul(U.Mul(ArchIntervals.Slope(C.Act), norms.KMlp[l]), e));   // or the global slope times K_mlp
        }
        if (tables)
        {
            var mt = _tables!.Mlp[l]!;
            var actC = mt.C.Select(x => ArchIntervals.Act(C.Act, x)).ToArray();   // act(c), the same at every token
            R[] zeroMlp = new R[C.DMlp], zeroModel = new R[C.DModel];             // Combine's t0 (copied, not written)
            var actPre = new R[C.DMlp];
            for (int t = 0; t < T; t++)
            {
                var sv = Combine(f[t], mt.U, zeroMlp);
                R[] pre, sl, tr;
                double epsIn = eps[t];
                if (mt.Norm is { } nt)
                {
                    // T3: u' = ι(Σ f U + U₀) + U_b; s = ι Σ f U + (ι − 1)U₀; transition Σ f DM + ι Σ f M + (ι − 1)M₀ + e₀.
                    var (io, rho) = nt.Scale(f[t]);
                    var im1 = io - R.One;
                    pre = sv.Select((x, k) => io * (x + mt.U0![k]) + mt.Ub![k]).ToArray();
                    sl = sv.Select((x, k) => io * x + im1 * mt.U0![k]).ToArray();
                    var fm = Combine(f[t], mt.M!, zeroModel);
                    tr = Combine(f[t], mt.E, mt.E0).Select((x, k) => x + io * fm[k] + im1 * mt.M0![k]).ToArray();
                    epsIn = nt.Tilde(eps[t], rho);
                }
                else { pre = Forward.Plus(mt.C, sv); sl = sv; tr = Combine(f[t], mt.E, mt.E0); }
                double eOut = 0;
                for (int m = 0; m < C.DMlp; m++)
                {
                    actPre[m] = ArchIntervals.Act(C.Act, pre[m]);
                    var e = actPre[m] - actC[m] - (mt.G[m] ? sl[m] : R.Zero);
                    eOut = U.Add(eOut, U.Mul(e.Mag, mt.WoutRow[m]));
                }
                double delta = U.Add(U.Norm(tr), eOut);
                Certify(s, $"ε at {Sites[site]}, position {t}", claim[t], U.Add(U.Add(eps[t], Pert(epsIn, pre, actPre)), delta));
                own += (long)f[t].Length * 2 * (C.DMlp + C.DModel) + 6L * C.DMlp + 2L * C.DModel + Costs.Norm(C.DModel) + 2L * C.DMlp + 3;
            }
            own += T3Costs.Mlp(C, f);
        }
        else
        {
            int cs = CcSite(site);
            var nom = prev.Nominal!;
            var next = nom.Select(x => Forward.Plus(x, _f.Mlp(l, x))).ToArray();
            nominal = cs >= 0 ? Decode(f, cs) : next;
            for (int t = 0; t < T; t++)
            {
                double delta = cs >= 0 ? U.Norm(Forward.Minus(next[t], nominal[t])) : 0;
                Certify(s, $"ε at {Sites[site]}, position {t}", claim[t], U.Add(U.Add(eps[t], U.Mul(K(eps[t], _f.PreMlp(l, nom[t])), eps[t])), delta));
            }
            long nnz = f.Sum(x => (long)x.Length);
            own = T * (Costs.Mlp(C) + C.DModel + 2L * C.DMlp + 3) + (cs >= 0 ? nnz * 2 * C.DModel + T * (2L * C.DModel + Costs.Norm(C.DModel)) : 0);
        }
        prev.Nominal = null; prev.Vector = null;
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = prev.Sequence, Site = site, Root = prev.Root, Vector = claim, Nominal = nominal };
    }

    // ---- L1 -------------------------------------------------------------------------------------------------------------
    Info LossStep(Step s)
    {
        bool tables = _strategy == "crosscoder-tables";
        int fixedInputs = tables ? 4 : 3;
        if (s.Inputs.Length < fixedInputs) Fail(s, "inputs: expected [last ε, advice, N1, (tables,) IP…]");
        var prev = Input(s, 0, "L2", "L5", "T1", "L4", "T2");
        var advice = Input(s, 1, "L2");
        var norms = Input(s, 2, "N1").Norms!;
        if (tables) Input(s, 3, "T1-table");
        if (advice.Features is null) Fail(s, $"inputs: the advice of step {s.Inputs[1]} was already closed by its sequence's L1 step");
        var seq = Seq(s);
        int q = s.ScopeInt("sequence");
        if (prev.Sequence != q || advice.Sequence != q) Fail(s, "inputs: the last ε and the advice must be of this step's sequence");
        if (s.Inputs[1] != prev.Root) Fail(s, $"inputs: the advice must be step {prev.Root}, the L2 step that started this ε chain, not step {s.Inputs[1]}");
        if (prev.Site != Sites.Count - 1) Fail(s, $"inputs: the ε must be at the last site {Sites[^1]}");
        if (prev.Consumed) Fail(s, $"inputs: step {s.Inputs[0]}'s ε was already used");
        prev.Consumed = true;
        var cap = new Dictionary<int, double[]>();
        for (int k = fixedInputs; k < s.Inputs.Length; k++)
        {
            var ip = Input(s, k, "IP");
            if (!cap.TryAdd(ip.Site, ip.Vector!)) Fail(s, $"inputs: two IP steps for position {ip.Site}");
        }
        var f = advice.Features!;
        var eps = prev.Vector!;
        double sum = 0;
        long wrong = 0;
        var lnf = tables ? _tables!.UnembedNorm : null;
        for (int t = 0; t < seq.Tokens.Length; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            double epsOut = eps[t];
            R[] z;
            if (!tables) z = _f.Logits(prev.Nominal![t]);
            else if (lnf is null) z = Combine(f[t], _tables!.Unembed, _tables.Unembed0);
            else
            {
                // T3: the logits read ln_final(h): z' = ι(Σ f UU + UU₀) + UU_b and the margin uses NL's ε̃.
                var (io, rho) = lnf.Scale(f[t]);
                z = NormTab.Scaled(Combine(f[t], _tables!.Unembed, _tables.Unembed0), io, _tables.UnembedB);
                epsOut = lnf.Tilde(eps[t], rho);
            }
            var d = Forward.Diffs(z, y);
            double margin = U.Mul(epsOut, norms.UnembedDiff[y]);
            double via = U.Add(Forward.CeFromDiffs(d).Hi, margin);
            sum = U.Add(sum, cap.TryGetValue(t, out var c) ? Math.Min(via, c[y]) : via);
            // ACC: |Δ(z_v − z_y)| ≤ ε‖u_v − u_y‖ ≤ ε max_i ‖u_i − u_y‖ (L1), so upper(z'_v − z'_y) + that margin < 0 suffices.
            if (!Forward.Certain(d, margin)) wrong++;
        }
        // The sequence is finished: keep only its loss bound, so memory does not grow with the advice.
        prev.Nominal = null; prev.Vector = null; advice.Features = null; advice.Vector = null;
        double claim = s.Number("loss_sum");
        Certify(s, $"loss_sum of sequence {q}", claim, sum);
        var errors = Errors(s, wrong, seq.LabelledCount, $"of sequence {q}");
        long zf = tables ? f.Where((_, t) => seq.Labels[t] >= 0).Sum(ft => (long)ft.Length * 2 * C.DVocabOut) + seq.LabelledCount * (long)C.DVocabOut
                         : seq.LabelledCount * (2L * C.DModel * C.DVocabOut + C.DVocabOut);
        long own = zf + seq.LabelledCount * (3L * C.DVocabOut + 1 + 4) + (tables ? T3Costs.Loss(C, f, seq.Labels) : 0);
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Sequence = q, Scalar = claim, Errors = errors };
    }

    // ---- INFO -----------------------------------------------------------------------------------------------------------
    Info InfoStep(Step s)
    {
        if (s.Claim.EnumerateObject().Any()) Fail(s, "INFO claims nothing");
        if (s.Inputs.Length != 1) Fail(s, "inputs: INFO takes the table step");
        Input(s, 0, "T1-table");
        // Its cost counts the features of all the advice: so every sequence's one L2 step must come before it.
        if (_chainRoot.Count != _data.Count) Fail(s, $"INFO counts the features of every sequence's advice: it must follow all {_data.Count} L2 steps ({_chainRoot.Count} so far)");
        long n = _featuresSeen.Count;
        long own = C.NLayers * C.NHeads * n * n * (2L * C.DHead + 2);
        Cost(s, own, false);
        return new Info { Lemma = s.Lemma };
    }

    // ---- CL, CLMEMBERS ---------------------------------------------------------------------------------------------------
    Info ClusterTable(Step s)
    {
        if (s.Inputs.Length != 0) Fail(s, "inputs: CL uses none");
        var boxJson = s.DataField("box");
        if (boxJson.ValueKind != JsonValueKind.Array || boxJson.GetArrayLength() is 0 || boxJson.GetArrayLength() > C.NCtx) Fail(s, $"data.box needs 1 to n_ctx = {C.NCtx} positions");
        int d = C.DModel;
        var box = boxJson.EnumerateArray().Select((b, t) =>
        {
            if (b.ValueKind != JsonValueKind.Array || b.GetArrayLength() != 2) throw new Rejection(s.Id, s.Lemma, $"data.box[{t}] must be [lo, hi]");
            double[] V(JsonElement e) => e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == d
                ? e.EnumerateArray().Select(x => x.TryGetDouble(out double v) && double.IsFinite(v) ? v : throw new Rejection(s.Id, s.Lemma, "box ends must be finite")).ToArray()
                : throw new Rejection(s.Id, s.Lemma, $"data.box[{t}] ends need d_model = {d} numbers");
            var lo = V(b[0]); var hi = V(b[1]);
            return Enumerable.Range(0, d).Select(i => lo[i] <= hi[i] ? new R(lo[i], hi[i]) : throw new Rejection(s.Id, s.Lemma, $"data.box[{t}] has lo > hi")).ToArray();
        }).ToArray();
        var h = C.IsBasic ? _f.Boxes(box, scores: true) : Arch.Boxes(box, scores: true).Select(Arch.Final).ToArray();   // R3
        if (!s.Claim.TryGetProperty("ce", out var ce) || ce.ValueKind != JsonValueKind.Array) Fail(s, "claim.ce must be a list of [t, y, bound]");
        var table = new Dictionary<(int, int), double>();
        var certainCells = new HashSet<(int, int)>();
        foreach (var e in ce.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != 3 || !e[0].TryGetInt32(out int t) || !e[1].TryGetInt32(out int y)
                || !e[2].TryGetDouble(out double b) || !double.IsFinite(b)) { Fail(s, "claim.ce entries must be [t, y, finite bound]"); return null!; }
            if (t < 0 || t >= box.Length || y < 0 || y >= C.DVocabOut) Fail(s, $"claim.ce entry [{t}, {y}] is outside the box's positions or the labels");
            if (!table.TryAdd((t, y), b)) Fail(s, $"claim.ce lists [{t}, {y}] twice");
            var diffs = _f.LogitDiffsBox(h[t], y);
            Certify(s, $"CE bound at position {t}, label {y}", b, Forward.CeFromDiffs(diffs).Hi);
            if (Forward.Certain(diffs)) certainCells.Add((t, y));
        }
        long own = Costs.Forward(C, box.Length, 0) * 2 + table.Count * ((C.DVocabOut - 1) * (4L * d + 2) + 3L * C.DVocabOut + 1);
        Cost(s, own, false); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Ce = table, Box = box, CertainCells = certainCells };
    }

    Info ClusterMembers(Step s)
    {
        if (s.Inputs.Length != 1) Fail(s, "inputs: CLMEMBERS takes its CL step");
        var cl = Input(s, 0, "CL");
        if (cl.Consumed) Fail(s, "inputs: that cluster's members were already given");
        cl.Consumed = true;
        var mj = s.DataField("members");
        if (mj.ValueKind != JsonValueKind.Array) Fail(s, "data.members must be a list of sequence indices");
        var members = mj.EnumerateArray().Select(x => x.TryGetInt32(out int i) && i >= 0 && i < _data.Count ? i
            : throw new Rejection(s.Id, s.Lemma, $"data.members must be sequence indices in [0, {_data.Count})")).ToArray();
        double sum = 0; long own = 0, wrong = 0, labelled = 0;
        foreach (int i in members)
        {
            var seq = _data.Sequences[i];
            if (seq.Tokens.Length > cl.Box!.Length) Fail(s, $"sequence {i} is longer than the cluster's box");
            for (int t = 0; t < seq.Tokens.Length; t++)
            {
                var e = _f.Embed(seq.Tokens[t], t);
                for (int j = 0; j < e.Length; j++)
                    if (e[j].Lo < cl.Box[t][j].Lo || e[j].Hi > cl.Box[t][j].Hi) Fail(s, $"sequence {i}'s embedding at position {t} is not inside the cluster's box (coordinate {j})");
                if (seq.Labels[t] >= 0)
                {
                    if (!cl.Ce!.TryGetValue((t, seq.Labels[t]), out double b)) Fail(s, $"the cluster has no bound for position {t}, label {seq.Labels[t]} (sequence {i})");
                    sum = U.Add(sum, cl.Ce[(t, seq.Labels[t])]);
                    if (!cl.CertainCells!.Contains((t, seq.Labels[t]))) wrong++;
                }
            }
            own += seq.Tokens.Length * 3L * C.DModel + seq.LabelledCount;
            labelled += seq.LabelledCount;
        }
        double claim = s.Number("loss_sum");
        Certify(s, "loss_sum of the cluster", claim, sum);
        var errors = Errors(s, wrong, labelled, "of the cluster");
        Cost(s, own, true); _ownFlops += own;
        return new Info { Lemma = s.Lemma, Members = members, Scalar = claim, Errors = errors };
    }
}
