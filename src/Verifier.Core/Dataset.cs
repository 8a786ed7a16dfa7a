using System.Text;
using System.Text.Json;

namespace Verifier.Core;

/// <summary>One sequence: token ids and, per position, the label to score there or −1 for none.</summary>
public sealed record Sequence(int[] Tokens, int[] Labels)
{
    public int LabelledCount => Labels.Count(l => l >= 0);
}

/// <summary>A token dataset in the JSON Lines format of spec/dataset.md: one object per line,
/// <c>{"tokens":[…],"labels":[…]}</c>, the two arrays of equal length, label −1 where a position is not scored; or the
/// whole input space of an enumerable task (<see cref="EnumeratedSpace"/>), whose sequences are computed from their
/// index when read and never held in memory.</summary>
public sealed class TokenDataset
{
    public TokenDataset(IReadOnlyList<Sequence> sequences) { Sequences = sequences; }

    TokenDataset(EnumeratedSpace space, int first, int end)
    {
        Space = space; Sequences = new EnumeratedSpace.View(space.Task, first, end - first);
    }

    /// <summary>The whole input space <paramref name="space"/> as a dataset.</summary>
    public static TokenDataset Enumerated(EnumeratedSpace space) => new(space, 0, space.Count);

    public IReadOnlyList<Sequence> Sequences { get; }
    /// <summary>Set when the sequences are (a contiguous part of) an enumerated input space.</summary>
    public EnumeratedSpace? Space { get; }
    /// <summary>The dataset is a whole enumerated space (not a slice of one): its content hash is the descriptor's.</summary>
    public bool IsWholeSpace => Space is not null && Sequences.Count == Space.Count;
    public int Count => Sequences.Count;

    long _labelled = -1;
    /// <summary>Labelled positions over all sequences (arithmetic for an enumerated space; summed once otherwise).</summary>
    public long LabelledPositions
    {
        get
        {
            if (_labelled >= 0) return _labelled;
            return _labelled = Space is { } sp ? (long)Count * sp.Task.LabelledPerSequence : Sequences.Sum(s => (long)s.LabelledCount);
        }
    }

    /// <summary>The sequences [first, end), in order (a view computing each sequence from its index for an enumerated space).</summary>
    public TokenDataset Slice(int first, int end)
    {
        if (first < 0 || end < first || end > Count) throw new ArgumentOutOfRangeException(nameof(end), $"[{first}, {end}) is not a range of {Count} sequences");
        if (Space is { } sp) return new TokenDataset(sp, ((EnumeratedSpace.View)Sequences).First + first, ((EnumeratedSpace.View)Sequences).First + end);
        return new(Sequences.Skip(first).Take(end - first).ToArray());
    }

    /// <summary>The longest line a dataset may hold, in bytes (without the line break): 64 KiB plus 32 bytes per
    /// position of the model's context (a position needs at most 11 bytes for its token and 12 for its label);
    /// without a model, n_ctx is taken as 65 536 (2 MiB + 64 KiB).</summary>
    public static int MaxLineBytes(int? nCtx) => 65536 + 32 * Math.Min(nCtx ?? 65536, 1 << 24);

    /// <summary>Reads a dataset; with <paramref name="config"/>, also checks every token, label and length
    /// against that model, naming the line that is wrong. A line longer than <see cref="MaxLineBytes"/> is
    /// refused as soon as the limit is passed, without reading the rest of it.</summary>
    public static TokenDataset Load(string path, ModelConfig? config = null)
    {
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist");
        if (ReadDescriptor(path) is { } bytes) return Enumerated(EnumeratedSpace.Parse(path, bytes, config));
        var list = new List<Sequence>();
        int max = MaxLineBytes(config?.NCtx);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        // Batches of whole lines are parsed on every core; each line's result or error lands in its own slot, and the slots
        // are taken in line order, so the sequences and the first error reported are those of a line-by-line read.
        foreach (var batch in LineBatches(path, fs, max))
        {
            int count = batch.Lines.Count;
            var seqs = new Sequence?[count];
            var errors = new Exception?[count];
            Parallel.ForEach(System.Collections.Concurrent.Partitioner.Create(0, count, Math.Max(256, count / (4 * Environment.ProcessorCount) + 1)), range =>
            {
                for (int i = range.Item1; i < range.Item2; i++)
                {
                    var (start, length) = batch.Lines[i];
                    var line = batch.Buffer.AsMemory(start, length);
                    if (line.Span.TrimStart(" \t\r"u8).IsEmpty) continue;
                    int lineNo = batch.FirstLineNo + i;
                    try
                    {
                        var seq = TryParseCanonical(line.Span) ?? ParseLine(path, lineNo, line, config);
                        if (config is not null) Check(path, lineNo, seq, config);
                        seqs[i] = seq;
                    }
                    catch (Exception e) { errors[i] = e; }
                }
            });
            for (int i = 0; i < count; i++)
            {
                if (errors[i] is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
                if (seqs[i] is { } q) list.Add(q);
            }
        }
        if (list.Count == 0) throw new InvalidInputException(path, "file", "holds no sequences");
        if (list.All(s => s.LabelledCount == 0)) throw new InvalidInputException(path, "labels", "no position is labelled (every label is −1)");
        return new TokenDataset(list);
    }

    /// <summary>The file's bytes when it is an enumerated-space descriptor (a JSON object whose first key is "format";
    /// spec/dataset.md), else null. A descriptor longer than <see cref="EnumeratedSpace.MaxDescriptorBytes"/> is refused.</summary>
    static byte[]? ReadDescriptor(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var head = new byte[EnumeratedSpace.MaxDescriptorBytes + 1];
        int n = 0, r;
        while (n < head.Length && (r = fs.Read(head, n, head.Length - n)) > 0) n += r;
        if (!EnumeratedSpace.LooksLikeDescriptor(head.AsSpan(0, n))) return null;
        if (n > EnumeratedSpace.MaxDescriptorBytes)
            throw new InvalidInputException(path, "descriptor", $"longer than {EnumeratedSpace.MaxDescriptorBytes} bytes, the limit for an enumerated-space descriptor (spec/dataset.md)");
        return head[..n];
    }

    /// <summary>Whole lines of a file and the buffer that holds them.</summary>
    sealed record LineBatch(byte[] Buffer, List<(int Start, int Length)> Lines, int FirstLineNo);

    /// <summary>The lines of <paramref name="s"/> (split at \n, a trailing \r dropped, a leading UTF-8 BOM skipped) in
    /// batches of about 256 KiB, each line at most <paramref name="max"/> bytes; a longer one is refused (after the lines
    /// before it are handed out) before more than max + 64 KiB of it is buffered.</summary>
    static IEnumerable<LineBatch> LineBatches(string path, Stream s, int max)
    {
        const int Read = 1 << 16, Target = 1 << 18;
        var buf = new byte[Target + 2 * Read];
        var lines = new List<(int, int)>();
        int len = 0, lineStart = 0, lineNo = 1, firstLineNo = 1, n;
        bool first = true;
        while (true)
        {
            if (buf.Length - len < Read) Array.Resize(ref buf, Math.Max(2 * buf.Length, len + Read));
            if ((n = s.Read(buf, len, Read)) <= 0) break;
            int scan = len;
            len += n;
            if (first)
            {
                first = false;
                if (len >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) lineStart = scan = 3;
            }
            while (true)
            {
                int nl = Array.IndexOf(buf, (byte)'\n', scan, len - scan);
                if (nl < 0) break;
                if (nl - lineStart > max + 1) break;                              // refused below, after the lines before it
                lines.Add(Trim(buf, lineStart, nl - lineStart));
                lineNo++;
                lineStart = scan = nl + 1;
            }
            if (len - lineStart > max + 1)
            {
                if (lines.Count > 0) yield return new LineBatch(buf, lines, firstLineNo);
                throw new InvalidInputException(path, $"line {lineNo}", $"longer than {max} bytes, the limit for a line of this dataset (spec/dataset.md)");
            }
            if (len >= Target && lines.Count > 0)
            {
                yield return new LineBatch(buf, lines, firstLineNo);
                var next = new byte[Target + 2 * Read + (len - lineStart)];
                Buffer.BlockCopy(buf, lineStart, next, 0, len - lineStart);
                buf = next; len -= lineStart; lineStart = 0;
                lines = []; firstLineNo = lineNo;
            }
        }
        if (len > lineStart) lines.Add(Trim(buf, lineStart, len - lineStart));
        if (lines.Count > 0) yield return new LineBatch(buf, lines, firstLineNo);

        static (int, int) Trim(byte[] b, int start, int length) => length > 0 && b[start + length - 1] == '\r' ? (start, length - 1) : (start, length);
    }

    /// <summary>The common exact form {"tokens":[i,…],"labels":[i,…]} (no spaces, integers without sign or leading zeros
    /// except a minus before a non-zero digit, at most 9 digits, neither array empty) read directly; null for anything
    /// else, which then goes through the strict JSON parser (and its messages). Whatever this accepts, the strict
    /// parser reads as the same sequence.</summary>
    internal static Sequence? TryParseCanonical(ReadOnlySpan<byte> line)
    {
        ReadOnlySpan<byte> head = "{\"tokens\":["u8, mid = "],\"labels\":["u8, tail = "]}"u8;
        if (!line.StartsWith(head)) return null;
        line = line[head.Length..];
        var tokens = Ints(ref line);
        if (tokens is null || !line.StartsWith(mid)) return null;
        line = line[mid.Length..];
        var labels = Ints(ref line);
        if (labels is null || !line.SequenceEqual(tail) || tokens.Length != labels.Length) return null;
        return new Sequence(tokens, labels);

        // i,i,…,i up to the closing bracket, which is left in s.
        static int[]? Ints(ref ReadOnlySpan<byte> s)
        {
            int close = s.IndexOf((byte)']');
            if (close <= 0) return null;
            var r = new int[s[..close].Count((byte)',') + 1];
            int p = 0;
            for (int k = 0; k < r.Length; k++)
            {
                bool neg = s[p] == '-';
                if (neg) p++;
                int start = p, v = 0;
                while (p < close && s[p] >= '0' && s[p] <= '9') { v = v * 10 + (s[p] - '0'); p++; }
                int digits = p - start;
                if (digits == 0 || digits > 9 || (s[start] == '0' && (digits > 1 || neg))) return null;
                r[k] = neg ? -v : v;
                if (k < r.Length - 1) { if (s[p] != ',') return null; p++; }
            }
            if (p != close) return null;
            s = s[close..];
            return r;
        }
    }

    /// <summary>Test hook: the strict parser on one line, without a model.</summary>
    internal static Sequence ParseStrict(ReadOnlyMemory<byte> line) => ParseLine("line", 1, line, null);

    static Sequence ParseLine(string path, int lineNo, ReadOnlyMemory<byte> line, ModelConfig? config)
    {
        string where = $"line {lineNo}";
        using var doc = StrictJson.ParseDocument(path, line, lineNo);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidInputException(path, where, "expected a JSON object {\"tokens\":[…],\"labels\":[…]}");
        int[]? tokens = null, labels = null;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            switch (p.Name)
            {
                case "tokens": tokens = Ints(path, where, "tokens", p.Value, config is null ? "[0, d_vocab)" : $"[0, {config.DVocab}) (d_vocab)"); break;
                case "labels": labels = Ints(path, where, "labels", p.Value, config is null ? "−1 or [0, d_vocab_out)" : $"−1 or [0, {config.DVocabOut}) (d_vocab_out)"); break;
                default: throw new InvalidInputException(path, where, $"unknown field '{Display.Escape(p.Name)}' (expected only tokens and labels)");
            }
        }
        if (tokens is null) throw new InvalidInputException(path, where, "missing field 'tokens'");
        if (labels is null) throw new InvalidInputException(path, where, "missing field 'labels'");
        if (tokens.Length == 0) throw new InvalidInputException(path, where, "'tokens' is empty");
        if (tokens.Length != labels.Length)
            throw new InvalidInputException(path, where, $"'tokens' has {tokens.Length} entries but 'labels' has {labels.Length}; they must match");
        return new Sequence(tokens, labels);
    }

    static int[] Ints(string path, string where, string field, JsonElement e, string range)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new InvalidInputException(path, where, $"'{field}' must be an array of integers");
        var r = new int[e.GetArrayLength()];
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out r[i]))
            {
                string raw = x.GetRawText();
                string shown = Display.Escape(raw.Length > 40 ? raw[..40] + "…" : raw);
                // A JSON number without fraction or exponent is an integer, only too large for any vocabulary.
                if (x.ValueKind == JsonValueKind.Number && raw.AsSpan().IndexOfAny(".eE") < 0)
                    throw new InvalidInputException(path, where, $"'{field}'[{i}] = {shown} is out of range (must be in {range})");
                throw new InvalidInputException(path, where, $"'{field}'[{i}] must be an integer, found {shown}");
            }
            i++;
        }
        return r;
    }

    static void Check(string path, int lineNo, Sequence s, ModelConfig c)
    {
        string where = $"line {lineNo}";
        if (s.Tokens.Length > c.NCtx)
            throw new InvalidInputException(path, where, $"sequence has {s.Tokens.Length} tokens, more than the model's n_ctx = {c.NCtx}");
        for (int i = 0; i < s.Tokens.Length; i++)
            if (s.Tokens[i] < 0 || s.Tokens[i] >= c.DVocab)
                throw new InvalidInputException(path, where, $"tokens[{i}] = {s.Tokens[i]} is outside the model's vocabulary [0, {c.DVocab})");
        for (int i = 0; i < s.Labels.Length; i++)
            if (s.Labels[i] < -1 || s.Labels[i] >= c.DVocabOut)
                throw new InvalidInputException(path, where, $"labels[{i}] = {s.Labels[i]} is outside [0, {c.DVocabOut}) and is not −1 (unscored)");
    }

    /// <summary>Checks an in-memory dataset against a model (the same rules as <see cref="Load"/>).</summary>
    public void CheckAgainst(ModelConfig config, string source)
    {
        if (Space is { } sp) { sp.CheckAgainst(config, source); return; }
        for (int i = 0; i < Count; i++) Check(source, i + 1, Sequences[i], config);
    }

    /// <summary>The canonical JSON Lines text (<see cref="DatasetLineWriter"/>).</summary>
    public string ToJsonLines()
    {
        var ms = new MemoryStream();
        using (var w = new DatasetLineWriter(ms, leaveOpen: true))
        {
            foreach (var s in Sequences) w.Write(s);
            w.Finish();
        }
        return Encoding.UTF8.GetString(ms.GetBuffer(), 0, (int)ms.Length);
    }

    /// <summary>Writes the dataset: the descriptor (its canonical bytes and a line break) for a whole enumerated space,
    /// JSON Lines otherwise.</summary>
    public void Save(string path, bool overwrite = false) =>
        AtomicOutput.WriteAllText(path, IsWholeSpace ? Space!.CanonicalJson() + "\n" : ToJsonLines(), overwrite);

    /// <summary>SHA-256 of the canonical JSON Lines text (independent of how the file was formatted), streamed; for a
    /// whole enumerated space, SHA-256 of the descriptor's canonical bytes (<see cref="EnumeratedSpace.CanonicalJson"/>).</summary>
    public string ContentHash()
    {
        if (IsWholeSpace) return Space!.ContentHash();
        using var w = new DatasetLineWriter(Stream.Null);
        foreach (var s in Sequences) w.Write(s);
        return w.Finish();
    }
}

/// <summary>Writes dataset lines in the canonical serialisation of spec/dataset.md (<c>{"tokens":[…],"labels":[…]}</c>,
/// integers in invariant decimal, no spaces, a line break after each), streamed, hashing what it writes: the SHA-256 of
/// the canonical text is the dataset's content hash (<see cref="TokenDataset.ContentHash"/>). The one implementation of
/// that format: <see cref="TokenDataset.ToJsonLines"/>, <see cref="TokenDataset.ContentHash"/> and make-data --task text
/// (Verifier.Text) all write through it.</summary>
public sealed class DatasetLineWriter : IDisposable
{
    readonly Stream _out;
    readonly bool _leaveOpen;
    readonly System.Security.Cryptography.IncrementalHash _hash =
        System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
    readonly byte[] _buf = new byte[1 << 16];
    int _used;

    /// <param name="output">Where the lines go (<see cref="Stream.Null"/> to hash only); a <see cref="FileStream"/> is
    /// flushed to disk by <see cref="Finish"/>.</param>
    public DatasetLineWriter(Stream output, bool leaveOpen = false) { _out = output; _leaveOpen = leaveOpen; }

    /// <summary>A new file (refused if it exists) to write the lines to.</summary>
    public static DatasetLineWriter Create(string path) =>
        new(new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16));

    static ReadOnlySpan<byte> TokensKey => "{\"tokens\":["u8;
    static ReadOnlySpan<byte> LabelsKey => "],\"labels\":["u8;
    static ReadOnlySpan<byte> End => "]}\n"u8;

    public void Write(Sequence s) => Write(s.Tokens, s.Labels);

    public void Write(ReadOnlySpan<int> tokens, ReadOnlySpan<int> labels)
    {
        Raw(TokensKey); Ints(tokens); Raw(LabelsKey); Ints(labels); Raw(End);
    }

    void Ints(ReadOnlySpan<int> xs)
    {
        for (int i = 0; i < xs.Length; i++)
        {
            if (_used + 12 > _buf.Length) Flush();
            if (i > 0) _buf[_used++] = (byte)',';
            System.Buffers.Text.Utf8Formatter.TryFormat(xs[i], _buf.AsSpan(_used), out int w);
            _used += w;
        }
    }

    void Raw(ReadOnlySpan<byte> b)
    {
        if (_used + b.Length > _buf.Length) Flush();
        b.CopyTo(_buf.AsSpan(_used));
        _used += b.Length;
    }

    void Flush()
    {
        _out.Write(_buf, 0, _used);
        _hash.AppendData(_buf, 0, _used);
        _used = 0;
    }

    /// <summary>Flushes (to disk for a file) and returns the SHA-256 of everything written (lower-case hex).</summary>
    public string Finish()
    {
        Flush();
        if (_out is FileStream fs) fs.Flush(flushToDisk: true); else _out.Flush();
        return Convert.ToHexStringLower(_hash.GetHashAndReset());
    }

    public void Dispose()
    {
        if (!_leaveOpen) _out.Dispose();
        _hash.Dispose();
    }
}
