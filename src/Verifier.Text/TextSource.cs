using System.Text;
using System.Text.Json;
using Parquet;
using Parquet.Schema;
using Verifier.Core;

namespace Verifier.Text;

/// <summary>One piece of text to tokenize. <see cref="NewDocument"/> is set on the first piece of each document
/// (a .jsonl line, a Parquet row); a .txt file is one document cut into pieces at places where the cut cannot change
/// the tokens (<see cref="TextSource.SafeCut"/>).</summary>
public readonly record struct TextPiece(string Text, bool NewDocument);

/// <summary>Reads the documents of a text file, streamed: .txt (UTF-8, one document), .jsonl (one JSON object per line,
/// a string field per document), .parquet (a string column, a row per document, one row group at a time). The kind
/// is chosen by the file's extension. <see cref="Position"/> / <see cref="Length"/> give progress (bytes, or row
/// groups for Parquet).</summary>
public abstract class TextSource
{
    public string Path { get; }
    public abstract long Length { get; }
    public abstract long Position { get; }
    /// <summary>Documents read so far.</summary>
    public long Documents { get; protected set; }

    protected TextSource(string path) { Path = path; }

    public abstract IEnumerable<TextPiece> Read(CancellationToken ct = default);

    public static readonly IReadOnlyList<string> Extensions = [".txt", ".jsonl", ".parquet"];

    /// <summary>Opens <paramref name="path"/> by its extension; <paramref name="textField"/> is the JSON field or
    /// Parquet column holding the text (null: "text"; refused for .txt, which has no fields).</summary>
    public static TextSource Open(string path, string? textField)
    {
        string full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new InvalidInputException(full, "file", "does not exist");
        string ext = System.IO.Path.GetExtension(full).ToLowerInvariant();
        switch (ext)
        {
            case ".txt":
                if (textField is not null) throw new UsageException($"--text-field does not apply to a .txt file ({full} is one plain-text document)");
                return new PlainTextSource(full);
            case ".jsonl":
                return new JsonLinesSource(full, textField ?? "text");
            case ".parquet":
                return new ParquetSource(full, textField ?? "text");
            default:
                throw new InvalidInputException(full, "extension", $"'{ext}' is not a known text format; expected one of {string.Join(", ", Extensions)}");
        }
    }

    /// <summary>The last index i in (0, end) where text[i−1] is not white space and text[i] is: the GPT-2 pre-tokenizer
    /// (<c>'s|'t|…| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>) always ends a piece there and looks only
    /// forward, so tokenizing [0, i) and [i, …) separately gives the tokens of the whole. −1 when there is none.</summary>
    public static int SafeCut(ReadOnlySpan<char> text)
    {
        for (int i = text.Length - 1; i > 0; i--)
            if (char.IsWhiteSpace(text[i]) && !char.IsWhiteSpace(text[i - 1])) return i;
        return -1;
    }
}

/// <summary>A UTF-8 text file as one document, read in blocks of about <see cref="BlockChars"/> characters (32 Ki: the
/// block's strings stay below the large-object heap, so they die young instead of piling up until a full GC) cut at
/// <see cref="TextSource.SafeCut"/>; a run of more than <see cref="MaxCarry"/> characters without such a cut (no
/// white space at all) is cut where it stands (between whole characters), the only place where the tokens may differ
/// from tokenizing the whole file at once.</summary>
public sealed class PlainTextSource : TextSource
{
    public int BlockChars { get; init; } = 1 << 15;
    public int MaxCarry { get; init; } = 1 << 24;
    readonly long _length;
    long _position;

    public PlainTextSource(string path) : base(path) { _length = new FileInfo(path).Length; }
    public override long Length => _length;
    public override long Position => _position;

    public override IEnumerable<TextPiece> Read(CancellationToken ct = default)
    {
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var reader = new StreamReader(fs, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
        var buf = new StringBuilder();
        var block = new char[BlockChars];
        bool first = true;
        Documents = 1;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            int n;
            try { n = reader.Read(block, 0, block.Length); }
            catch (DecoderFallbackException e) { throw new InvalidInputException(Path, "text", $"is not valid UTF-8 (near byte {fs.Position}): {e.Message}"); }
            _position = fs.Position;
            if (n == 0) break;
            buf.Append(block, 0, n);
            if (buf.Length < BlockChars) continue;
            string s = buf.ToString();
            int cut = SafeCut(s);
            if (cut <= 0)
            {
                if (s.Length <= MaxCarry) continue;
                cut = char.IsHighSurrogate(s[^1]) ? s.Length - 1 : s.Length;
            }
            yield return new TextPiece(s[..cut], first);
            first = false;
            buf.Clear().Append(s, cut, s.Length - cut);
        }
        if (buf.Length > 0) yield return new TextPiece(buf.ToString(), first);
        else if (first) throw new InvalidInputException(Path, "text", "is empty");
    }
}

/// <summary>JSON Lines: each non-blank line one JSON object whose <see cref="Field"/> is a string (a document); each
/// line is parsed strictly (<see cref="StrictJson"/>: malformed JSON, a duplicate key or content after the value is
/// refused with the line named).</summary>
public sealed class JsonLinesSource(string path, string field) : TextSource(path)
{
    public string Field { get; } = field;
    readonly long _length = new FileInfo(path).Length;
    long _position;
    public override long Length => _length;
    public override long Position => _position;

    public override IEnumerable<TextPiece> Read(CancellationToken ct = default)
    {
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var reader = new StreamReader(fs, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
        long lineNo = 0;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            string? line;
            try { line = reader.ReadLine(); }
            catch (DecoderFallbackException e) { throw new InvalidInputException(Path, $"line {lineNo + 1}", $"is not valid UTF-8: {e.Message}"); }
            _position = fs.Position;
            if (line is null) break;
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string text = Parse(line, lineNo);
            Documents++;
            yield return new TextPiece(text, true);
        }
        if (Documents == 0) throw new InvalidInputException(Path, "documents", "none: the file has no JSON lines");
    }

    string Parse(string line, long lineNo)
    {
        // Strict like every JSON input of the project: one value per line, no key twice (the text field could
        // otherwise be read two ways).
        using var doc = StrictJson.ParseDocument(Path, Encoding.UTF8.GetBytes(line), (int)Math.Min(lineNo, int.MaxValue));
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new InvalidInputException(Path, $"line {lineNo}", $"expected a JSON object with a string field '{Field}', got {Kind(doc.RootElement.ValueKind)}");
        if (!doc.RootElement.TryGetProperty(Field, out var v))
            throw new InvalidInputException(Path, $"line {lineNo}, field '{Field}'", "missing (choose the field with --text-field)");
        if (v.ValueKind != JsonValueKind.String)
            throw new InvalidInputException(Path, $"line {lineNo}, field '{Field}'", $"expected a string, got {Kind(v.ValueKind)}");
        return v.GetString()!;
    }

    static string Kind(JsonValueKind k) => k switch
    {
        JsonValueKind.Object => "an object", JsonValueKind.Array => "an array", JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number", JsonValueKind.True or JsonValueKind.False => "a boolean", JsonValueKind.Null => "null",
        _ => k.ToString(),
    };
}

/// <summary>Parquet: the string column <see cref="Field"/>, one row group in memory at a time; a null value is
/// refused (a document must be text).</summary>
public sealed class ParquetSource(string path, string field) : TextSource(path)
{
    public string Field { get; } = field;
    long _groups = 1, _done;
    public override long Length => _groups;
    public override long Position => _done;

    // Parquet.Net 6 reports a UTF-8 (STRING) column as ReadOnlyMemory<char>; older writers' as string.
    static bool IsText(Type t) => t == typeof(string) || t == typeof(ReadOnlyMemory<char>);

    static string TypeName(Type t) => t.IsGenericType ? $"{t.Name[..t.Name.IndexOf('`')]}<{string.Join(", ", t.GetGenericArguments().Select(TypeName))}>" : t.Name;

    public override IEnumerable<TextPiece> Read(CancellationToken ct = default)
    {
        using var fs = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        ParquetReader reader;
        try { reader = ParquetReader.CreateAsync(fs, null, false, ct).GetAwaiter().GetResult(); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Parquet.Net reports a bad footer or magic as IOException ("not a parquet file, head: …").
            throw new InvalidInputException(Path, "file", $"is not a Parquet file: {e.Message}", e);
        }
        try
        {
            var fields = reader.Schema.GetDataFields();
            var df = fields.FirstOrDefault(f => f.Path.ToString() == Field || f.Name == Field && f.Path.ToList().Count == 1)
                ?? throw new InvalidInputException(Path, $"column '{Field}'",
                    $"missing; the file has {(fields.Length == 0 ? "no columns" : string.Join(", ", fields.Select(f => $"'{f.Path}'")))} (choose one with --text-field)");
            if (!IsText(df.ClrType) || df.IsArray)
                throw new InvalidInputException(Path, $"column '{Field}'", $"expected a string column, got {(df.IsArray ? "a list of " : "")}{TypeName(df.ClrType)}");
            _groups = Math.Max(1, reader.RowGroupCount);
            long row = 0;
            for (int g = 0; g < reader.RowGroupCount; g++)
            {
                ct.ThrowIfCancellationRequested();
                string?[] values;
                using (var rg = reader.OpenRowGroupReader(g))
                {
                    values = new string?[rg.RowCount];
                    rg.ReadAsync(df, values.AsMemory(), null, ct).GetAwaiter().GetResult();
                }
                for (int i = 0; i < values.Length; i++)
                {
                    row++;
                    if (values[i] is null) throw new InvalidInputException(Path, $"row {row}, column '{Field}'", "is null; expected a string");
                    Documents++;
                    yield return new TextPiece(values[i]!, true);
                }
                _done = g + 1;
            }
            if (Documents == 0) throw new InvalidInputException(Path, $"column '{Field}'", "has no rows");
        }
        finally
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
