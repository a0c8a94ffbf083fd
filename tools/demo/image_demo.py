"""Draw a trained model's predictions on an image (detection / instance or semantic seg).

    python tools/demo/image_demo.py CONFIG CHECKPOINT IMAGE --out-file pred.jpg
    python tools/demo/image_demo.py configs/quickstart/upernet_uninet_tiny_synthetic_ade.py \
        work_dirs/quickstart_seg/iter_600.pth demo.jpg --out-file seg.jpg

mmdet configs go through mmdet's ``DetInferencer`` (boxes, masks, labels above
``--score-thr``); mmseg configs through mmseg's ``inference_model`` and
``SegLocalVisualizer``. The kind is read from the config's ``default_scope`` (or, failing
that, from the model type).

The UniNet backbone runs as its BN-folded inference copy in channels_last
(``fuse_backbones(model, channels_last=True)``, applied after the checkpoint is loaded; same
predictions up to float rounding, faster); ``--no-fuse`` runs the plain model.
"""
import argparse
from pathlib import Path

import numpy as np
from mmengine.config import Config
from mmengine.logging import MMLogger

import uninet_mm  # noqa: F401  (registers the UniNet backbone)
from uninet_mm.models.acceleration import fuse_backbones, use_separable_roi_align

SEG_MODEL_TYPES = ('EncoderDecoder', 'CascadeEncoderDecoder', 'SegTTAModel')


def task_of(cfg: Config) -> str:
    """``'seg'`` for mmseg configs, ``'det'`` for mmdet ones (default scope, else model type)."""
    scope = cfg.get('default_scope')
    if scope == 'mmseg':
        return 'seg'
    if scope == 'mmdet':
        return 'det'
    model_type = str(cfg.get('model', {}).get('type', ''))
    return 'seg' if model_type.split('.')[-1] in SEG_MODEL_TYPES else 'det'


def fold(model, fuse: bool) -> None:
    """Fold the BatchNorms of ``model``'s UniNet backbone (loaded, eval mode) and put
    :class:`SeparableRoIAlign` into its RoI heads when ``fuse``; log what ran."""
    logger = MMLogger.get_current_instance()
    if not fuse:
        logger.info('running the plain model (--no-fuse)')
        return
    folded = fuse_backbones(model, channels_last=True)
    logger.info('running the UniNet backbone with its BatchNorms folded into the convolutions, '
                'channels_last' if folded else 'no UniNet backbone: running the model as it is')
    if use_separable_roi_align(model):
        logger.info('RoIAlign layers -> SeparableRoIAlign (the same features; the CPU path)')


def draw_detection(cfg: Config, checkpoint: str, image: str, out_file: str, device: str,
                   score_thr: float, fuse: bool = True) -> np.ndarray:
    """Run mmdet's DetInferencer on ``image`` and write the drawing to ``out_file``."""
    import mmcv
    from mmdet.apis import DetInferencer

    inferencer = DetInferencer(model=cfg, weights=checkpoint, device=device)
    fold(inferencer.model, fuse)
    result = inferencer(image, return_vis=True, no_save_vis=True, no_save_pred=True,
                        pred_score_thr=score_thr)
    vis = result['visualization'][0]
    mmcv.imwrite(mmcv.rgb2bgr(vis), out_file)
    pred = result['predictions'][0]
    kept = [s for s in pred.get('scores', []) if s >= score_thr]
    MMLogger.get_current_instance().info(f'{len(kept)} detections above {score_thr}')
    return vis


def draw_segmentation(cfg: Config, checkpoint: str, image: str, out_file: str, device: str,
                      opacity: float = 0.5, fuse: bool = True) -> np.ndarray:
    """Run mmseg's inference on ``image`` and draw the predicted classes to ``out_file``."""
    import mmcv
    from mmseg.apis import inference_model, init_model
    from mmseg.visualization import SegLocalVisualizer

    model = init_model(cfg, checkpoint, device=device)
    fold(model, fuse)
    result = inference_model(model, image)
    visualizer = SegLocalVisualizer(name='uninet_image_demo', alpha=opacity)
    visualizer.dataset_meta = dict(classes=model.dataset_meta['classes'],
                                   palette=model.dataset_meta['palette'])
    img = mmcv.imread(image, channel_order='rgb')
    visualizer.add_datasample('prediction', img, data_sample=result, draw_gt=False,
                              draw_pred=True, show=False, out_file=out_file)
    return visualizer.get_image()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out-file', default=None,
                        help='where to write the drawing (default: <image stem>_pred.jpg)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda:0')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: lowest score drawn')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='segmentation: opacity of the class colours')
    parser.add_argument('--no-fuse', action='store_true',
                        help='run the plain model instead of the BN-folded backbone')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    out_file = args.out_file or Path(args.image).stem + '_pred.jpg'
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    if task_of(cfg) == 'seg':
        draw_segmentation(cfg, args.checkpoint, args.image, out_file, args.device,
                          args.opacity, fuse=not args.no_fuse)
    else:
        draw_detection(cfg, args.checkpoint, args.image, out_file, args.device,
                       args.score_thr, fuse=not args.no_fuse)
    print(f'prediction drawn to {out_file}')


if __name__ == '__main__':
    main()
