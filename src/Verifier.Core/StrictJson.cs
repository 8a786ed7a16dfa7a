using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Verifier.Core;

/// <summary>JSON as every input of this project must be: exactly one value (only whitespace after it), and no
/// object with the same property name twice at any depth. System.Text.Json's own parsers let the last duplicate
/// win, so two readers could see two different files; here both are refused with the file, the line and the byte
/// offset named.</summary>
public static class StrictJson
{
    /// <summary>Parses <paramref name="text"/> (the whole content of <paramref name="file"/>) as one JSON value.</summary>
    public static JsonNode? Parse(string file, string text) => Parse(file, Encoding.UTF8.GetBytes(text));

    public static JsonNode? Parse(string file, ReadOnlySpan<byte> utf8, int firstLine = 1)
    {
        Validate(file, utf8, firstLine);
        try { return JsonNode.Parse(utf8); }
        catch (JsonException e) { throw new InvalidInputException(file, "JSON", Display.Escape(e.Message), e); }
    }

    /// <summary>As <see cref="Parse(string, ReadOnlySpan{byte}, int)"/>, as a <see cref="JsonDocument"/> (dispose it).</summary>
    public static JsonDocument ParseDocument(string file, ReadOnlyMemory<byte> utf8, int firstLine = 1)
    {
        Validate(file, utf8.Span, firstLine);
        try { return JsonDocument.Parse(utf8); }
        catch (JsonException e) { throw new InvalidInputException(file, "JSON", Display.Escape(e.Message), e); }
    }

    /// <summary>Walks the tokens once: refuses malformed JSON, a duplicate property name in any object, and
    /// anything but whitespace after the value. <paramref name="firstLine"/> is the line number of the first byte
    /// (for one line of a JSON Lines file).</summary>
    public static void Validate(string file, ReadOnlySpan<byte> utf8, int firstLine = 1)
    {
        if (utf8.StartsWith("\uFEFF"u8)) utf8 = utf8[3..];
        if (utf8.TrimStart(" \t\r\n"u8).IsEmpty) throw new InvalidInputException(file, Where(utf8, 0, firstLine), "empty: expected one JSON value");
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 256 });
        var names = new Stack<HashSet<string>?>();
        try
        {
            reader.Read();
            do
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject: names.Push(new HashSet<string>(StringComparer.Ordinal)); break;
                    case JsonTokenType.StartArray: names.Push(null); break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray: names.Pop(); break;
                    case JsonTokenType.PropertyName:
                        string name = reader.GetString()!;
                        if (!names.Peek()!.Add(name))
                            throw new InvalidInputException(file, Where(utf8, reader.TokenStartIndex, firstLine),
                                $"duplicate key '{Display.Escape(name)}' (each key may appear once per object)");
                        break;
                }
            }
            while (names.Count > 0 && reader.Read());
            if (names.Count > 0) throw new InvalidInputException(file, Where(utf8, utf8.Length, firstLine), "the JSON value ends early");
            long end = reader.BytesConsumed;
            for (long i = end; i < utf8.Length; i++)
                if (utf8[(int)i] is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n'))
                    throw new InvalidInputException(file, Where(utf8, i, firstLine), "content after the end of the JSON value (a file holds exactly one)");
        }
        catch (JsonException e)
        {
            long at = e.BytePositionInLine is { } b && e.LineNumber is { } l ? OffsetOf(utf8, l, b) : reader.BytesConsumed;
            throw new InvalidInputException(file, Where(utf8, at, firstLine), $"not valid JSON: {Display.Escape(e.Message)}", e);
        }
    }

    static long OffsetOf(ReadOnlySpan<byte> utf8, long line, long byteInLine)
    {
        long off = 0;
        for (long n = 0; n < line && off < utf8.Length; off++) if (utf8[(int)off] == '\n') n++;
        return Math.Min(utf8.Length, off + byteInLine);
    }

    /// <summary>"line L, byte B" (1-based line, 0-based byte offset from the start of the text).</summary>
    static string Where(ReadOnlySpan<byte> utf8, long offset, int firstLine)
    {
        int line = firstLine;
        for (int i = 0; i < offset && i < utf8.Length; i++) if (utf8[i] == '\n') line++;
        return $"line {line}, byte {offset}";
    }
}
