using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Verifier.Core;

namespace Verifier.Text;

/// <summary>How a token stream becomes windows (spec/dataset.md, "Text datasets").</summary>
/// <param name="NCtx">Window length in tokens, BOS included.</param>
/// <param name="Bos">Prepend the BOS id to every window (TransformerLens's default, prepend_bos=True).</param>
/// <param name="Stride">How far the content of consecutive windows starts apart, in stream tokens; null: the content
/// length (n_ctx − 1 with BOS, n_ctx without), so windows tile the stream without overlap.</param>
/// <param name="MaxWindows">At most this many windows (the first ones); the rest of the input is not read.</param>
/// <param name="VocabTop">Remap to the N − 1 most frequent ids plus one &lt;unk&gt; id (null: keep the tokenizer's ids).</param>
public sealed record TextWindowOptions(int NCtx, bool Bos = true, int? Stride = null, int MaxWindows = int.MaxValue, int? VocabTop = null)
{
    /// <summary>Stream tokens per window: n_ctx − 1 with BOS, n_ctx without.</summary>
    public int Content => Bos ? NCtx - 1 : NCtx;
    public int EffectiveStride => Stride ?? Content;

    public void Validate()
    {
        if (NCtx < (Bos ? 2 : 1)) throw new UsageException($"--n-ctx must be at least {(Bos ? "2 with BOS (one position for BOS, one for text)" : "1")}, got {NCtx}");
        if (EffectiveStride < 1) throw new UsageException($"--stride must be positive, got {EffectiveStride}");
        if (MaxWindows < 1) throw new UsageException($"--count must be positive, got {MaxWindows}");
        if (VocabTop is { } n && n < 2) throw new UsageException($"--vocab-top must be at least 2 (one kept id and <unk>), got {n}");
    }
}

/// <summary>What <see cref="TextDataset.Build"/> wrote.</summary>
public sealed record TextDatasetResult(
    string Out, string Source, string Tokenizer, int NCtx, bool Bos, int? BosId, int Stride, int Windows, long LabelledPositions,
    long Documents, long StreamTokens, int DVocab, int TokenizerDVocab, string ContentHash, string? VocabMap, int? UnkId, int? KeptIds);

/// <summary>Text file → tokens → windows → a dataset in the JSON Lines format of spec/dataset.md, streamed: documents
/// are read and tokenized one at a time, windows written as soon as their last label is known, the output published
/// only when complete (<see cref="AtomicOutput"/>).</summary>
public static class TextDataset
{
    public static TextDatasetResult Build(TextSource source, TextTokenizer tokenizer, TextWindowOptions o, string outPath,
        bool overwrite = false, IProgress<(double Fraction, string Status)>? progress = null, CancellationToken ct = default)
    {
        o.Validate();
        string full = Path.GetFullPath(outPath);
        string mapPath = VocabMapPath(full);
        if (!overwrite && File.Exists(full)) throw new OutputExistsException(full);
        if (o.VocabTop is not null && !overwrite && File.Exists(mapPath)) throw new OutputExistsException(mapPath);

        if (o.VocabTop is not int top)
        {
            return AtomicOutput.Publishing(full, overwrite, tmp =>
            {
                using var w = DatasetLineWriter.Create(tmp);
                var s = Stream(source, tokenizer, o, (t, l) => w.Write(t, l), null, progress, ct);
                string hash = w.Finish();
                return Result(s, hash, tokenizer.DVocab, null, null, null);
            });
        }

        // --vocab-top: the windows go to a temporary binary file while the ids are counted; the mapping is known only
        // at the end, then the windows are rewritten through it.
        string raw = $"{full}.windows.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            var counts = new long[tokenizer.DVocab];
            Stats stats;
            using (var rawOut = new FileStream(raw, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                var bytes = new byte[o.NCtx * 8];
                stats = Stream(source, tokenizer, o, (t, l) =>
                {
                    for (int i = 0; i < t.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * i), t[i]);
                    for (int i = 0; i < l.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * (t.Length + i)), l[i]);
                    rawOut.Write(bytes);
                }, counts, progress, ct);
            }
            var map = VocabMap.Top(counts, top, o.Bos ? tokenizer.BosId : null);
            string mapJson = map.ToJson(tokenizer.Name, tokenizer.DVocab);
            return AtomicOutput.Publishing(full, overwrite, tmp =>
            {
                using var w = DatasetLineWriter.Create(tmp);
                using var rawIn = new FileStream(raw, FileMode.Open, FileAccess.Read, FileShare.None, 1 << 16);
                var bytes = new byte[o.NCtx * 8];
                var t = new int[o.NCtx]; var l = new int[o.NCtx];
                for (int k = 0; k < stats.Windows; k++)
                {
                    ct.ThrowIfCancellationRequested();
                    rawIn.ReadExactly(bytes);
                    for (int i = 0; i < o.NCtx; i++)
                    {
                        t[i] = map.Apply(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * i)));
                        int lab = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4 * (o.NCtx + i)));
                        l[i] = lab < 0 ? lab : map.Apply(lab);
                    }
                    w.Write(t, l);
                }
                string hash = w.Finish();
                // The map is published just before the dataset; if the dataset cannot be, the map goes too.
                AtomicOutput.WriteAllText(mapPath, mapJson, overwrite);
                return Result(stats, hash, top, mapPath, map.UnkId, map.Kept);
            });
        }
        catch when (!File.Exists(full) && File.Exists(mapPath) && !overwrite)
        {
            File.Delete(mapPath);
            throw;
        }
        finally
        {
            if (File.Exists(raw)) File.Delete(raw);
        }

        TextDatasetResult Result(Stats s, string hash, int dVocab, string? map, int? unk, int? kept) => new(
            full, source.Path, tokenizer.Name, o.NCtx, o.Bos, o.Bos ? tokenizer.BosId : null, o.EffectiveStride, s.Windows, s.Labelled,
            source.Documents, s.StreamTokens, dVocab, tokenizer.DVocab, hash, map, unk, kept);
    }

    /// <summary>Where <c>--vocab-top</c> writes its mapping: <c>&lt;out&gt;.vocab.json</c>.</summary>
    public static string VocabMapPath(string outPath) => Path.GetFullPath(outPath) + ".vocab.json";

    public readonly record struct Stats(int Windows, long Labelled, long StreamTokens);

    public delegate void WindowSink(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels);

    /// <summary>Tokenizes <paramref name="source"/> document by document (the BOS/EOS id between documents, as
    /// TransformerLens's tokenize_and_concatenate joins them with the EOS token), cuts the stream into windows and
    /// hands each to <paramref name="sink"/>. With <paramref name="counts"/>, counts each stream position that some
    /// window covers (its tokens and its labels) once, and the BOS once per window.</summary>
    public static Stats Stream(TextSource source, TextTokenizer tokenizer, TextWindowOptions o, WindowSink sink,
        long[]? counts, IProgress<(double Fraction, string Status)>? progress, CancellationToken ct)
    {
        int L = o.Content, S = o.EffectiveStride, n = o.NCtx;
        var buf = new List<int>(L + 1 + (1 << 16));
        long bufStart = 0;          // stream index of buf[0]
        long next = 0;              // stream index where the next window's content starts
        long covered = 0;           // stream positions below this were counted already
        long streamTokens = 0, labelled = 0;
        int windows = 0;
        var tokens = new int[n]; var labels = new int[n];
        var piece = new List<int>(1 << 16);
        bool anyDocument = false;
        double lastReported = -1;

        void Emit(bool hasNext)
        {
            int off = (int)(next - bufStart);
            int p = 0;
            if (o.Bos) tokens[p++] = tokenizer.BosId;
            for (int i = 0; i < L; i++) tokens[p + i] = buf[off + i];
            for (int i = 0; i < n - 1; i++) labels[i] = tokens[i + 1];
            labels[n - 1] = hasNext ? buf[off + L] : -1;
            if (counts is not null)
            {
                if (o.Bos) counts[tokenizer.BosId]++;
                long end = next + L + (hasNext ? 1 : 0);
                for (long q = Math.Max(covered, next); q < end; q++) counts[buf[(int)(q - bufStart)]]++;
                covered = Math.Max(covered, end);
            }
            sink(tokens, labels);
            labelled += hasNext ? n : n - 1;
            windows++;
            next += S;
            // Drop what no later window needs.
            int drop = (int)Math.Min(buf.Count, next - bufStart);
            if (drop > 0) { buf.RemoveRange(0, drop); bufStart += drop; }
        }

        void Push(int id)
        {
            long index = streamTokens++;
            if (index < next) { bufStart = index + 1; return; }   // inside a gap between windows (stride > content)
            buf.Add(id);
        }

        foreach (var part in source.Read(ct))
        {
            ct.ThrowIfCancellationRequested();
            if (part.NewDocument && anyDocument)
            {
                Push(tokenizer.BosId);
            }
            anyDocument |= part.NewDocument;
            piece.Clear();
            tokenizer.Encode(part.Text, piece);
            foreach (int id in piece)
            {
                Push(id);
                // A window is complete when its label token (one past its content) has arrived.
                while (windows < o.MaxWindows && bufStart + buf.Count > next + L && bufStart <= next) Emit(hasNext: true);
                if (windows >= o.MaxWindows) break;
            }
            if (windows >= o.MaxWindows) break;
            if (progress is not null)
            {
                double f = source.Length == 0 ? 1 : (double)source.Position / source.Length;
                if (f - lastReported >= 0.005)
                {
                    lastReported = f;
                    progress.Report((f, $"{source.Documents:N0} documents, {streamTokens:N0} tokens, {windows:N0} windows"));
                }
            }
        }
        // The end of the stream: one more window if its content is complete (its last label stays −1).
        if (windows < o.MaxWindows && bufStart <= next && bufStart + buf.Count >= next + L) Emit(hasNext: false);
        if (windows == 0)
            throw new InvalidInputException(source.Path, "text",
                $"yields {streamTokens} tokens{(anyDocument ? "" : " (no text)")}; one window of n_ctx {n} needs {L} (lower --n-ctx or give more text)");
        progress?.Report((1, $"{source.Documents:N0} documents, {streamTokens:N0} tokens, {windows:N0} windows"));
        return new Stats(windows, labelled, streamTokens);
    }
}

/// <summary><c>--vocab-top N</c>: the kept ids (the BOS id first when windows carry one, then by count, most frequent
/// first, ties to the smaller id) get new ids 0, 1, … in that order; every other id becomes <see cref="UnkId"/> = N − 1.</summary>
public sealed class VocabMap
{
    readonly Dictionary<int, int> _map;
    /// <summary>Original ids in new-id order.</summary>
    public IReadOnlyList<int> Original { get; }
    public int UnkId { get; }
    public int Kept => Original.Count;

    VocabMap(IReadOnlyList<int> original, int unk)
    {
        Original = original; UnkId = unk;
        _map = original.Select((id, i) => (id, i)).ToDictionary(p => p.id, p => p.i);
    }

    public int Apply(int id) => _map.TryGetValue(id, out int v) ? v : UnkId;

    public static VocabMap Top(long[] counts, int n, int? bos)
    {
        var order = new List<int>(n - 1);
        if (bos is int b) order.Add(b);
        order.AddRange(Enumerable.Range(0, counts.Length)
            .Where(id => counts[id] > 0 && id != bos)
            .OrderByDescending(id => counts[id]).ThenBy(id => id)
            .Take(n - 1 - order.Count));
        return new VocabMap(order, n - 1);
    }

    /// <summary>The new d_vocab of a mapping file <see cref="ToJson"/> wrote (its <c>d_vocab</c>, an integer ≥ 2).</summary>
    public static int ReadDVocab(string path)
    {
        var root = StrictJson.Parse(path, File.ReadAllBytes(path));
        return root is System.Text.Json.Nodes.JsonObject o && o["d_vocab"] is System.Text.Json.Nodes.JsonValue dv && dv.TryGetValue(out int n) && n >= 2
            ? n : throw new InvalidInputException(path, "d_vocab", "expected an integer ≥ 2 (the file make-data --vocab-top writes)");
    }

    /// <summary>The mapping file: format, tokenizer, the tokenizer's d_vocab, the new d_vocab, the &lt;unk&gt; id, and
    /// <c>map</c>: original id (a decimal string) → new id, in new-id order.</summary>
    public string ToJson(string tokenizer, int sourceDVocab)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("format", "verifier-vocab-map/1");
            w.WriteString("tokenizer", tokenizer);
            w.WriteNumber("tokenizer_d_vocab", sourceDVocab);
            w.WriteNumber("d_vocab", UnkId + 1);
            w.WriteNumber("unk_id", UnkId);
            w.WriteStartObject("map");
            for (int i = 0; i < Original.Count; i++) w.WriteNumber(Original[i].ToString(System.Globalization.CultureInfo.InvariantCulture), i);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }
}
