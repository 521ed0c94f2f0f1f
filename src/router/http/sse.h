// Streaming helpers of the HTTP API: server-sent-event framing and stop-string matching over
// streamed text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pd::http {

// One SSE event carrying `payload` (a JSON text without newlines): "data: <payload>\n\n".
std::string SseData(std::string_view payload);
// The end-of-stream marker: "data: [DONE]\n\n".
std::string SseDone();

// Finds OpenAI `stop` strings in text that arrives in pieces. Text that may be the start of a
// stop string is held back until it is known not to be; the stop string and everything after it
// are never emitted.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends generated text; returns the text that can be emitted now. After a stop string
  // completes, stopped() is true and later pushes return "".
  std::string Push(std::string_view text);
  // End of generation: the held-back text (it did not become a stop string).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace pd::http
