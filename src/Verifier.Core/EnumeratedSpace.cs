using System.Text;
using System.Text.Json;

namespace Verifier.Core;

/// <summary>A task whose inputs can all be listed in a fixed order: sequence i is computed from i alone, so the whole
/// input space is a dataset (spec/dataset.md, "Enumerated input spaces") without ever being written out.</summary>
public interface IEnumerableTask : ITask
{
    /// <summary>The number of distinct inputs, or null when it does not fit a long.</summary>
    long? SpaceSize { get; }
    /// <summary>Labelled positions per sequence (the same for every input of these tasks).</summary>
    int LabelledPerSequence { get; }
    /// <summary>Input <paramref name="index"/> in lexicographic order of its free tokens, with the task's labels.</summary>
    Sequence At(long index);
    /// <summary>The task's parameters in the descriptor, in canonical order (after "format" and "task").</summary>
    IReadOnlyList<(string Key, int Value)> DescriptorFields { get; }
}

/// <summary>The whole input space of an <see cref="IEnumerableTask"/>, described by a small JSON object
/// (<c>{"format":"verifier-enumerated/1","task":…,…,"sequences":N}</c>); its canonical bytes name it.</summary>
public sealed class EnumeratedSpace
{
    public const string Format = "verifier-enumerated/1";
    public IEnumerableTask Task { get; }
    public int Count { get; }

    EnumeratedSpace(IEnumerableTask task, int count) { Task = task; Count = count; }

    /// <summary>The space of <paramref name="task"/>; refused (naming the size) when it holds more than int.MaxValue
    /// sequences, the most a dataset may hold.</summary>
    public static EnumeratedSpace Of(ITask task)
    {
        if (task is not IEnumerableTask e)
            throw new UsageException($"the task '{task.Name}' is not enumerable (--all lists the whole input space of max-of-k, modular-addition or sort)");
        if (e.SpaceSize is not { } n || n > int.MaxValue)
            throw new UsageException($"the input space of {Short(e)} has {(e.SpaceSize is { } s ? s.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) : "more than 2⁶³")} sequences, " +
                $"more than int.MaxValue = {int.MaxValue.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)}, the most a dataset may hold; use a smaller --vocab or --k");
        return new EnumeratedSpace(e, (int)n);
    }

    /// <summary>"max-of-k (vocab 64, k 4)".</summary>
    public static string Short(IEnumerableTask t) => $"{t.Name} ({string.Join(", ", t.DescriptorFields.Select(f => $"{f.Key} {f.Value}"))})";

    public long LabelledPositions => (long)Count * Task.LabelledPerSequence;

    /// <summary>The canonical descriptor: no spaces, keys in the fixed order format, task, the task's parameters,
    /// sequences; UTF-8, no line break. The dataset's content hash is the SHA-256 of these bytes.</summary>
    public string CanonicalJson()
    {
        var sb = new StringBuilder();
        sb.Append("{\"format\":\"").Append(Format).Append("\",\"task\":\"").Append(Task.Name).Append('"');
        foreach (var (k, v) in Task.DescriptorFields) sb.Append(",\"").Append(k).Append("\":").Append(v);
        sb.Append(",\"sequences\":").Append(Count).Append('}');
        return sb.ToString();
    }

    public string ContentHash() => Hashing.Sha256(Encoding.UTF8.GetBytes(CanonicalJson()));

    /// <summary>Does the file start like a descriptor: a JSON object whose first key is "format" (after an optional
    /// BOM and whitespace)? A JSON Lines dataset's objects hold only tokens and labels, so the two never collide.</summary>
    public static bool LooksLikeDescriptor(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith("\uFEFF"u8)) head = head[3..];
        head = head.TrimStart(" \t\r\n"u8);
        if (head.IsEmpty || head[0] != '{') return false;
        head = head[1..].TrimStart(" \t\r\n"u8);
        return head.StartsWith("\"format\""u8);
    }

    /// <summary>The longest descriptor file accepted.</summary>
    public const int MaxDescriptorBytes = 4096;

    /// <summary>Parses a descriptor strictly: one JSON object, no duplicate key, every field known and an integer
    /// where one is expected, the format and task known and enumerable, "sequences" equal to the size of the space;
    /// with <paramref name="config"/>, the space must fit the model (tokens &lt; d_vocab, length ≤ n_ctx, labels &lt; d_vocab_out).</summary>
    public static EnumeratedSpace Parse(string path, ReadOnlySpan<byte> utf8, ModelConfig? config)
    {
        if (utf8.Length > MaxDescriptorBytes)
            throw new InvalidInputException(path, "descriptor", $"longer than {MaxDescriptorBytes} bytes, the limit for an enumerated-space descriptor (spec/dataset.md)");
        if (utf8.StartsWith("\uFEFF"u8)) utf8 = utf8[3..];
        var node = StrictJson.Parse(path, utf8);
        if (node is not System.Text.Json.Nodes.JsonObject o) throw new InvalidInputException(path, "descriptor", "expected a JSON object");
        string Str(string key)
        {
            if (!o.TryGetPropertyValue(key, out var v) || v is null) throw new InvalidInputException(path, "descriptor", $"missing field '{key}'");
            if (v.GetValueKind() != JsonValueKind.String) throw new InvalidInputException(path, "descriptor", $"'{key}' must be a string");
            return v.GetValue<string>();
        }
        string format = Str("format");
        if (format != Format) throw new InvalidInputException(path, "descriptor", $"format '{Display.Escape(format)}' is not known (expected '{Format}')");
        string task = Str("task");
        string[] taskKeys = task switch
        {
            "max-of-k" => ["vocab", "k", "trigger"],
            "modular-addition" => ["p"],
            "sort" => ["vocab", "k"],
            "text" => throw new InvalidInputException(path, "descriptor", "task 'text' is not enumerable (its inputs are windows of a file)"),
            _ => throw new InvalidInputException(path, "descriptor", $"unknown task '{Display.Escape(task)}' (enumerable: max-of-k, modular-addition, sort)"),
        };
        foreach (var p in o)
            if (p.Key is not ("format" or "task" or "sequences") && !taskKeys.Contains(p.Key))
                throw new InvalidInputException(path, "descriptor", $"unknown field '{Display.Escape(p.Key)}' (a {task} descriptor has format, task, {string.Join(", ", taskKeys)}, sequences)");
        long? Int(string key, bool required)
        {
            if (!o.TryGetPropertyValue(key, out var v))
                return required ? throw new InvalidInputException(path, "descriptor", $"missing field '{key}'") : null;
            if (v is null || v.GetValueKind() != JsonValueKind.Number || !v.AsValue().TryGetValue<long>(out long x) || v.ToJsonString().AsSpan().IndexOfAny(".eE") >= 0)
                throw new InvalidInputException(path, "descriptor", $"'{key}' must be an integer");
            return x;
        }
        int? Small(string key, bool required) => Int(key, required) is { } x
            ? x is >= int.MinValue and <= int.MaxValue ? (int)x : throw new InvalidInputException(path, "descriptor", $"'{key}' = {x} is out of range")
            : null;
        TaskCatalog.Parameters pars = task switch
        {
            "max-of-k" => new(Vocab: Small("vocab", true), K: Small("k", true), Trigger: Small("trigger", false)),
            "modular-addition" => new(P: Small("p", true)),
            _ => new(Vocab: Small("vocab", true), K: Small("k", true)),
        };
        long sequences = Int("sequences", true)!.Value;
        EnumeratedSpace space;
        try { space = Of(TaskCatalog.Create(task, pars)); }
        catch (UsageException e) { throw new InvalidInputException(path, "descriptor", e.Message.Replace("--", "")); }
        if (sequences != space.Count)
            throw new InvalidInputException(path, "descriptor", $"'sequences' = {sequences}, but the space of {Short(space.Task)} has {space.Count}");
        if (config is not null) space.CheckAgainst(config, path);
        return space;
    }

    /// <summary>The space fits the model: every token &lt; d_vocab, every length ≤ n_ctx, every label &lt; d_vocab_out.</summary>
    public void CheckAgainst(ModelConfig c, string path)
    {
        if (Task.NCtx > c.NCtx) throw new InvalidInputException(path, "descriptor", $"sequences of {Short(Task)} have {Task.NCtx} tokens, more than the model's n_ctx = {c.NCtx}");
        if (Task.DVocab > c.DVocab) throw new InvalidInputException(path, "descriptor", $"tokens of {Short(Task)} reach {Task.DVocab - 1}, outside the model's vocabulary [0, {c.DVocab})");
        if (Task.DVocabOut > c.DVocabOut) throw new InvalidInputException(path, "descriptor", $"labels of {Short(Task)} reach {Task.DVocabOut - 1}, outside [0, {c.DVocabOut}) (d_vocab_out)");
    }

    /// <summary>Sequences [first, first + count) of the space, each computed from its index when read.</summary>
    public sealed class View(IEnumerableTask task, int first, int count) : IReadOnlyList<Sequence>
    {
        public int First => first;
        public int Count => count;
        public Sequence this[int index] => (uint)index < (uint)count ? task.At((long)first + index) : throw new ArgumentOutOfRangeException(nameof(index));
        public IEnumerator<Sequence> GetEnumerator() { for (int i = 0; i < count; i++) yield return task.At((long)first + i); }
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>Digits of <paramref name="index"/> in base <paramref name="radix"/>, most significant first
    /// (lexicographic order over [radix]^k).</summary>
    internal static int[] Digits(long index, int radix, int k)
    {
        var d = new int[k];
        for (int j = k - 1; j >= 0; j--) { d[j] = (int)(index % radix); index /= radix; }
        return d;
    }

    /// <summary>radix^k, or null when it exceeds long.MaxValue.</summary>
    internal static long? Power(int radix, int k)
    {
        long n = 1;
        for (int j = 0; j < k; j++) { if (n > long.MaxValue / radix) return null; n *= radix; }
        return n;
    }
}
