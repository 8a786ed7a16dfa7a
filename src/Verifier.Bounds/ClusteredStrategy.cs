using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>clustered (proofs/CL-clusters.md): sequences are grouped by k-means on their crosscoder features
/// (seeded); each cluster gets one box per position enclosing its members' embeddings h⁰ (advice), one interval
/// forward pass over those boxes gives a uniform CE bound per (position, label) for the whole cluster, and each
/// sequence costs only a membership check and table lookups. c = 1 is the most compact proof; more clusters
/// trade cost for tightness (c = |X| is brute force in boxes).</summary>
public static class ClusteredStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps, long Errors) Run(BoundInputs inputs, string path, int clusters, ulong seed,
        IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var w = inputs.Model; var c = w.Config; var cc = inputs.Crosscoder!;
        if (clusters < 1) throw new UsageException($"--clusters must be at least 1, got {clusters}");
        int k = Math.Min(clusters, inputs.Data.Count);
        var encoder = new PlainCrosscoder(cc, c.SiteNames());
        var features = inputs.Data.Sequences.Select(s => encoder.Encode(w, s.Tokens)).ToArray();
        var assign = KMeans(features, cc.Config.Width, k, seed, ct);
        var model = new IntervalModel(w);
        using var tw = new TranscriptWriter(path, inputs.Artefacts(), Strategies.Clustered,
            new JsonObject { ["clusters"] = k, ["seed"] = seed, ["clustering"] = "k-means on per-position feature activations" });
        var clSteps = new List<int>(); var sums = new List<double>();
        long errors = 0;
        int done = 0;
        for (int cl = 0; cl < k; cl++)
        {
            ct.ThrowIfCancellationRequested();
            var members = Enumerable.Range(0, inputs.Data.Count).Where(i => assign[i] == cl).ToList();
            if (members.Count == 0) continue;
            int T = members.Max(i => inputs.Data.Sequences[i].Tokens.Length);
            var box = new Iv[T][];
            foreach (int i in members)
            {
                var seq = inputs.Data.Sequences[i];
                for (int t = 0; t < seq.Tokens.Length; t++)
                {
                    var h = model.Embed(seq.Tokens[t], t);
                    box[t] = box[t] is null ? h : box[t].Select((b, j) => Iv.Hull(b, h[j])).ToArray();
                }
            }
            // One interval forward over the boxes; CE bounds for the (position, label) pairs the members need.
            var h0 = box;
            var sites = BoxForward.Run(model, h0, useScores: true);
            var needed = members.SelectMany(i => Enumerable.Range(0, inputs.Data.Sequences[i].Tokens.Length)
                .Where(t => inputs.Data.Sequences[i].Labels[t] >= 0).Select(t => (t, y: inputs.Data.Sequences[i].Labels[t]))).Distinct()
                .OrderBy(p => p.t).ThenBy(p => p.y).ToList();
            var diffs = needed.ToDictionary(p => p, p => BoxForward.LogitDifferences(w, sites[p.t], p.y));
            var bound = needed.ToDictionary(p => p, p => ArchIv.Slack(c, IntervalModel.CrossEntropyFromDifferences(diffs[p]).Hi));
            // ACC: (t, y) is certain when every logit difference is negative over the whole box.
            var certain = needed.Where(p => IntervalModel.MaxUpper(diffs[p]) < 0).ToHashSet();
            var boxJson = new JsonArray(box.Select(b => (JsonNode)new JsonArray(
                BoundProgram.Array(b.Select(x => x.Lo)), BoundProgram.Array(b.Select(x => x.Hi)))).ToArray());
            long tableFlops = Flops.Forward(c, T, 0) * 2 + needed.Count * ((c.DVocabOut - 1) * (4L * c.DModel + 2) + Flops.CrossEntropy(c.DVocabOut));
            int tableStep = tw.Add(new TranscriptStep("CL", [], BoundProgram.Scope(("cluster", cl)),
                new JsonObject { ["ce"] = new JsonArray(needed.Select(p => (JsonNode)new JsonArray(p.t, p.y, bound[p])).ToArray()) },
                tableFlops, DatasetDependent: false, new JsonObject { ["box"] = boxJson }));
            double sum = 0;
            long memberFlops = 0; int wrong = 0;
            foreach (int i in members)
            {
                var seq = inputs.Data.Sequences[i];
                for (int t = 0; t < seq.Tokens.Length; t++)
                    if (seq.Labels[t] >= 0)
                    {
                        sum = Up.Add(sum, bound[(t, seq.Labels[t])]);
                        if (!certain.Contains((t, seq.Labels[t]))) wrong++;
                    }
                memberFlops += seq.Tokens.Length * 3L * c.DModel + seq.LabelledCount;
            }
            sum = Claim.Slack(sum);
            int step = tw.Add(new TranscriptStep("CLMEMBERS", [tableStep], BoundProgram.Scope(("cluster", cl)),
                new JsonObject { ["loss_sum"] = sum, ["errors"] = wrong }, memberFlops, DatasetDependent: true,
                new JsonObject { ["members"] = new JsonArray(members.Select(i => (JsonNode)i).ToArray()) }));
            clSteps.Add(step); sums.Add(sum); errors += wrong;
            done += members.Count;
            progress?.Report((done, inputs.Data.Count));
        }
        var (b0, final) = BoundProgram.Mean(tw, clSteps, sums, inputs.Positions, errors);
        var cost = tw.Complete([], b0, final, null, adviceBits: 0);
        return (b0, cost, tw.StepCount, errors);
    }

    /// <summary>k-means (k-means++ initialisation, seeded; at most 20 Lloyd iterations) on each sequence's features laid
    /// out position by position (position t, feature i → coordinate t·n + i); centres are dense, points sparse.</summary>
    public static int[] KMeans((int Index, double Value)[][][] seqs, int width, int k, ulong seed, CancellationToken ct = default)
    {
        int N = seqs.Length;
        int dim = width * Math.Max(1, seqs.Max(s => s.Length));
        var points = seqs.Select(s => s.SelectMany((ft, t) => ft.Select(p => (Key: t * width + p.Index, p.Value))).ToArray()).ToArray();
        var norms = points.Select(p => p.Sum(x => x.Value * x.Value)).ToArray();
        var rng = Rng.Derive(seed, "clustered/kmeans");
        var centres = new List<double[]>();
        var cNorm = new List<double>();
        double Dist(int i, int j)
        {
            double dot = 0; var mu = centres[j];
            foreach (var (key, v) in points[i]) dot += v * mu[key];
            return Math.Max(0, norms[i] - 2 * dot + cNorm[j]);
        }
        void AddCentre(double[] mu) { centres.Add(mu); cNorm.Add(mu.Sum(v => v * v)); }
        double[] Of(int i) { var mu = new double[dim]; foreach (var (key, v) in points[i]) mu[key] = v; return mu; }
        AddCentre(Of(rng.NextInt(N)));
        var best = Enumerable.Range(0, N).Select(i => Dist(i, 0)).ToArray();
        while (centres.Count < k)
        {
            ct.ThrowIfCancellationRequested();
            double total = best.Sum();
            int pick = rng.NextInt(N);
            if (total > 0)
            {
                double r = rng.NextDouble() * total; pick = N - 1;
                for (int i = 0; i < N; i++) { r -= best[i]; if (r <= 0) { pick = i; break; } }
            }
            AddCentre(Of(pick));
            int j = centres.Count - 1;
            for (int i = 0; i < N; i++) best[i] = Math.Min(best[i], Dist(i, j));
        }
        var assign = new int[N];
        for (int iter = 0; iter < 20; iter++)
        {
            ct.ThrowIfCancellationRequested();
            bool changed = false;
            for (int i = 0; i < N; i++)
            {
                int arg = 0; double bd = double.PositiveInfinity;
                for (int j = 0; j < centres.Count; j++) { double dd = Dist(i, j); if (dd < bd) { bd = dd; arg = j; } }
                if (iter == 0 || assign[i] != arg) changed = true;
                assign[i] = arg;
            }
            if (!changed) break;
            var counts = new int[centres.Count];
            foreach (int a in assign) counts[a]++;
            for (int j = 0; j < centres.Count; j++) if (counts[j] > 0) Array.Clear(centres[j]);
            for (int i = 0; i < N; i++) foreach (var (key, v) in points[i]) centres[assign[i]][key] += v / counts[assign[i]];
            for (int j = 0; j < centres.Count; j++) cNorm[j] = centres[j].Sum(v => v * v);
        }
        return assign;
    }
}
